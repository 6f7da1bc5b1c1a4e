"""Batches of planned patches, streamed from the store into a device.

On the host, threads read each batch's inner chunks (one ranged read per shard
object, shard indexes kept, decompression off the GIL: :class:`chunkstore.ChunkReader`),
cut each patch's window out of its chunk and pack the batch as stored DN (uint16
stays uint16) with its labels, a few batches ahead of the step. On the device,
:func:`to_device` makes the model inputs (radiometry, indices, normalization),
zeroes the padding and applies each patch's rot90/flip, so a batch crosses to a GPU
as 2 bytes per value, pinned. No worker processes: nothing is pickled.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import islice
from typing import Any

import numpy as np

from chunkstore import ChunkReader, Store
from models import ModelSpec, match_bands, model_inputs, valid_pixels
from models import to_device as dn_to_device

from ._data import SceneRef
from ._metrics import IGNORE


@dataclass(frozen=True)
class PlannedPatch:
    scene: int   # index into the stream's scenes
    y0: int      # inner chunk origin, scene pixels
    x0: int
    dy: int = 0  # patch offset inside the chunk
    dx: int = 0
    aug: int = 0  # 0-7: ``aug % 4`` quarter turns, then a left-right flip when >= 4


@dataclass(frozen=True)
class HostBatch:
    raw: np.ndarray     # (B, C, P, P) stored DN of the bands the model reads
    label: np.ndarray   # (B, P, P) uint8; IGNORE where unlabelled or any input is nodata
    aug: np.ndarray     # (B,) augmentation codes
    extent: np.ndarray  # (B, 2) rows and columns of real pixels; the rest is padding
    scene: np.ndarray   # (B,) scene index (whose radiometry applies)
    pinned: tuple[Any, Any] | None = None  # the page-locked tensors raw and label view


    def __len__(self) -> int:
        return len(self.aug)


class PatchStream:
    """Host batches of planned patches of ``scenes``, as the model ``spec`` reads them;
    ``threads`` host threads read, ``prefetch`` batches ahead of the consumer. Shard
    indexes read once are kept for the stream's life (every epoch of a run). ``pin``
    (for a GPU): batches are packed straight into page-locked memory, so the step's
    thread only starts the asynchronous copy (pinning a fresh batch there would take
    longer than the copy)."""

    def __init__(self, store: Store, scenes: Sequence[SceneRef], spec: ModelSpec,
                 threads: int = 8, prefetch: int = 4, pin: bool = False) -> None:
        self.scenes, self.spec, self.prefetch = list(scenes), spec, max(1, prefetch)
        self.pin = pin
        self.bands = [match_bands(spec, s.bands, s.item) for s in self.scenes]
        self.names = self.bands[0][1]
        dtypes = {np.dtype(s.dtype) for s in self.scenes}
        self.dtype = dtypes.pop() if len(dtypes) == 1 else np.dtype(np.float32)
        self._pool = ThreadPoolExecutor(max(1, threads), thread_name_prefix="patch-read")
        self._readers = [ChunkReader(store, s.key, self._pool) for s in self.scenes]

    def batches(self, plan: Sequence[PlannedPatch], patch: int, batch: int
                ) -> Iterator[HostBatch]:
        """``plan`` in order, ``batch`` patches of ``patch``^2 pixels at a time."""
        spans = iter([plan[i:i + batch] for i in range(0, len(plan), batch)])
        with ThreadPoolExecutor(self.prefetch, thread_name_prefix="patch-batch") as ahead:
            pending = deque(ahead.submit(self.host_batch, s, patch)
                            for s in islice(spans, self.prefetch))
            while pending:
                try:
                    done = pending.popleft().result()
                except BaseException:
                    for f in pending:
                        f.cancel()
                    raise
                nxt = next(spans, None)
                if nxt is not None:
                    pending.append(ahead.submit(self.host_batch, nxt, patch))
                yield done

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def host_batch(self, patches: Sequence[PlannedPatch], patch: int) -> HostBatch:
        """Read and pack ``patches``: every inner chunk they need read once."""
        P, n = patch, len(patches)
        raw, label, pinned = self._buffers((n, len(self.names), P, P))
        extent = np.zeros((n, 2), np.int64)
        by_scene: dict[int, list[int]] = {}
        for i, p in enumerate(patches):
            by_scene.setdefault(p.scene, []).append(i)
        for s, members in by_scene.items():
            ref, reader = self.scenes[s], self._readers[s]
            band_chunks = math.ceil(len(ref.bands) / reader.layout("reflectance").chunk[0])
            at = [(patches[i].y0 // ref.chunk, patches[i].x0 // ref.chunk) for i in members]
            refl = reader.read("reflectance", [(b, y, x) for y, x in at
                                               for b in range(band_chunks)])
            labs = reader.read("label", at)
            idx = list(self.bands[s][0])
            for j, i in enumerate(members):
                dn = refl[j * band_chunks:(j + 1) * band_chunks]
                dn = (dn[0] if band_chunks == 1 else np.concatenate(dn))[idx]
                valid = valid_pixels(dn, ref.radiometry)
                lab = np.where(valid, labs[j], IGNORE).astype(np.uint8)
                dn, lab = _window(dn, lab, patches[i].dy, patches[i].dx, P)
                h, w = lab.shape
                raw[i, :, :h, :w] = dn
                label[i, :h, :w] = lab
                extent[i] = h, w
        return HostBatch(raw, label, np.array([p.aug for p in patches], np.int64), extent,
                         np.array([p.scene for p in patches], np.int64), pinned)

    def _buffers(self, shape: tuple[int, int, int, int]
                 ) -> tuple[np.ndarray, np.ndarray, tuple[Any, Any] | None]:
        """Zeroed DN (B, C, P, P) and unset labels (B, P, P), page-locked when pinning."""
        if not self.pin:
            return (np.zeros(shape, self.dtype), np.full((shape[0], *shape[2:]), IGNORE,
                                                         np.uint8), None)
        import torch

        like = torch.from_numpy(np.zeros(0, self.dtype)).dtype  # numpy's as torch's
        dn = torch.zeros(shape, dtype=like, pin_memory=True)
        lab = torch.full((shape[0], *shape[2:]), IGNORE, dtype=torch.uint8, pin_memory=True)
        return dn.numpy(), lab.numpy(), (dn, lab)


def to_device(hb: HostBatch, stream: PatchStream, device: Any, spec: ModelSpec | None = None
              ) -> tuple[Any, Any]:
    """(model inputs (B, C, P, P) float32, labels (B, P, P) int64) on ``device`` from a
    host batch: DN cross as stored (pinned, asynchronous to a GPU), then inputs,
    padding and augmentation are made there. ``spec``: whose normalization (default
    the stream's)."""
    import torch

    spec = spec or stream.spec
    device = torch.device(device)
    raw = dn_to_device(hb.pinned[0] if hb.pinned else hb.raw, device)
    y = dn_to_device(hb.pinned[1] if hb.pinned else hb.label, device).long()
    groups: dict[Any, list[int]] = {}
    for i, s in enumerate(hb.scene):
        groups.setdefault(stream.scenes[s].radiometry, []).append(i)
    parts = []
    for radiometry, members in groups.items():
        r = raw if len(groups) == 1 else raw[members]
        x, _ = model_inputs(r.transpose(0, 1), stream.names, spec, radiometry)
        parts.append((members, x.transpose(0, 1)))
    if len(parts) == 1:
        x = parts[0][1].contiguous()
    else:
        x = torch.empty((len(hb), spec.in_channels, *hb.raw.shape[2:]), dtype=torch.float32,
                        device=device)
        for members, xi in parts:
            x[members] = xi
    P = hb.raw.shape[-1]
    for i in np.flatnonzero((hb.extent < P).any(axis=1)):
        h, w = hb.extent[i]
        x[i, :, h:] = 0
        x[i, :, :, w:] = 0
    return augment(x, y, hb.aug)


def augment(x: Any, y: Any, codes: np.ndarray) -> tuple[Any, Any]:
    """Patch ``i`` of images (B, C, H, W) and labels (B, H, W), in place, turned
    ``codes[i] % 4`` quarter turns (from rows towards columns, as ``numpy.rot90``), then
    flipped left-right when ``codes[i] >= 4``; square patches."""
    import torch

    if not codes.any():
        return x, y
    for code in np.unique(codes):
        if code == 0:
            continue
        sel = torch.from_numpy(np.flatnonzero(codes == code)).to(x.device)
        k, flip = int(code) % 4, code >= 4
        xs, ys = torch.rot90(x[sel], k, dims=(2, 3)), torch.rot90(y[sel], k, dims=(1, 2))
        if flip:
            xs, ys = xs.flip(3), ys.flip(2)
        x[sel], y[sel] = xs, ys
    return x, y


def _window(dn: np.ndarray, lab: np.ndarray, dy: int, dx: int, patch: int
            ) -> tuple[np.ndarray, np.ndarray]:
    """The ``patch`` x ``patch`` window at (dy, dx) of a chunk (cut short where the chunk
    is), moved to hold the first labelled pixel when it would hold none."""
    h, w = lab.shape
    dy, dx = min(dy, max(h - patch, 0)), min(dx, max(w - patch, 0))
    if not (lab[dy:dy + patch, dx:dx + patch] != IGNORE).any():
        ys, xs = np.nonzero(lab != IGNORE)
        if len(ys):
            dy = int(np.clip(ys[0] - patch // 2, 0, max(h - patch, 0)))
            dx = int(np.clip(xs[0] - patch // 2, 0, max(w - patch, 0)))
    return dn[:, dy:dy + patch, dx:dx + patch], lab[dy:dy + patch, dx:dx + patch]
