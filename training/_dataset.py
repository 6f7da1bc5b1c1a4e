"""A map-style torch dataset of planned patches, read straight from the scene Zarrs.

Each patch lies inside one inner chunk, so it costs one chunk read (plus the
shard index) per array. A batch's patches are fetched concurrently
(``__getitems__``); each DataLoader worker process opens its own store client on
first use. Credentials are kept apart from the store and never logged.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from chunkstore import Credentials, Store
from models import ModelSpec, match_bands, model_inputs

from ._data import SceneRef
from ._metrics import IGNORE
from ._sampler import augment


@dataclass(frozen=True)
class PlannedPatch:
    scene: int   # index into the dataset's scenes
    y0: int      # inner chunk origin, scene pixels
    x0: int
    dy: int = 0  # patch offset inside the chunk
    dx: int = 0
    aug: int = 0


class PatchDataset:
    """``dataset[i]`` -> (normalized inputs (C, P, P) float32, labels (P, P) int64)."""

    def __init__(self, store: Store, credentials: Credentials | None,
                 scenes: Sequence[SceneRef], spec: ModelSpec, plan: Sequence[PlannedPatch],
                 patch: int, threads: int = 8) -> None:
        self.store = store.without_credentials() if store.is_s3 else store
        self._credentials = credentials
        self.scenes = list(scenes)
        self.spec = spec
        self.plan = list(plan)
        self.patch = patch
        self.threads = threads
        self.bands = [match_bands(spec, s.bands, s.item) for s in self.scenes]
        self._pid: int | None = None
        self._groups: dict[int, Any] = {}
        self._pool: ThreadPoolExecutor | None = None

    def __len__(self) -> int:
        return len(self.plan)

    def __getstate__(self) -> dict[str, Any]:  # spawned workers: no open clients
        state = dict(self.__dict__)
        state.update(_pid=None, _groups={}, _pool=None)
        return state

    def _group(self, i: int) -> Any:
        import zarr

        if self._pid != os.getpid():  # a new (forked) worker: its own client and pool
            self._pid, self._groups, self._pool = os.getpid(), {}, None
        if i not in self._groups:
            st = (self.store.with_credentials(self._credentials)
                  if self._credentials is not None else self.store)
            self._groups[i] = zarr.open_group(st.zarr_store(self.scenes[i].key, read_only=True),
                                              mode="r", zarr_format=3)
        return self._groups[i]

    def __getitem__(self, i: int) -> tuple[Any, Any]:
        import torch

        x, y = self.read(self.plan[i])
        return torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))

    def __getitems__(self, idx: Sequence[int]) -> list[tuple[Any, Any]]:
        self._group(self.plan[idx[0]].scene)  # reset per process before threads start
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="patch")
        return list(self._pool.map(self.__getitem__, idx))

    def read(self, p: PlannedPatch) -> tuple[np.ndarray, np.ndarray]:
        """One patch: inputs and labels (255 where the label or any input band is nodata)."""
        s = self.scenes[p.scene]
        g = self._group(p.scene)
        H, W = s.shape
        y1, x1 = min(p.y0 + s.chunk, H), min(p.x0 + s.chunk, W)
        rows, cols = slice(p.y0, y1), slice(p.x0, x1)
        raw = np.asarray(g["reflectance"][:, rows, cols])  # damage: an error naming the shard
        lab = np.asarray(g["label"][rows, cols])
        idx, names = self.bands[p.scene]
        x, valid = model_inputs(raw[list(idx)], names, self.spec, s.radiometry)
        lab = np.where(valid, lab, IGNORE).astype(np.uint8)
        x, lab = _window(x, lab, p.dy, p.dx, self.patch)
        return augment(x, lab, p.aug)


def worker_init(_: int) -> None:
    """DataLoader workers exit with their S3 sessions open (the OS closes the sockets);
    keep aiohttp's 'Unclosed client session' notices out of the user's console."""
    import logging

    logging.getLogger("asyncio").setLevel(logging.CRITICAL)


def loader(dataset: PatchDataset, batch: int, workers: int) -> Any:
    """A DataLoader over ``dataset`` in plan order, ``workers`` processes prefetching."""
    from torch.utils.data import DataLoader

    return DataLoader(dataset, batch_size=batch, shuffle=False, num_workers=workers,
                      prefetch_factor=4 if workers else None,
                      worker_init_fn=worker_init if workers else None)


def _window(x: np.ndarray, lab: np.ndarray, dy: int, dx: int, patch: int
            ) -> tuple[np.ndarray, np.ndarray]:
    """The ``patch`` x ``patch`` window at (dy, dx) of a chunk, moved to hold the first
    labelled pixel when it would hold none; padded (0, 255) where the chunk is short."""
    h, w = lab.shape
    dy, dx = min(dy, max(h - patch, 0)), min(dx, max(w - patch, 0))
    if not (lab[dy:dy + patch, dx:dx + patch] != IGNORE).any():
        ys, xs = np.nonzero(lab != IGNORE)
        if len(ys):
            dy = int(np.clip(ys[0] - patch // 2, 0, max(h - patch, 0)))
            dx = int(np.clip(xs[0] - patch // 2, 0, max(w - patch, 0)))
    x, lab = x[:, dy:dy + patch, dx:dx + patch], lab[dy:dy + patch, dx:dx + patch]
    ph, pw = patch - lab.shape[0], patch - lab.shape[1]
    if ph or pw:
        x = np.pad(x, ((0, 0), (0, ph), (0, pw)))
        lab = np.pad(lab, ((0, ph), (0, pw)), constant_values=IGNORE)
    return x, lab
