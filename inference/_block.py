"""The block function, on torch tensors so one code runs on a CPU or a GPU: stored DN
-> model inputs (radiometry, indices, normalization, mirrored edges) -> batched tiles
-> the model -> sin^2 blending -> uint8 products. Pure: the store is reached only
through a ``read`` callable returning stored DN (numpy); nothing else leaves the device
but the uint8 products and the border pieces.

Tiles sit on one global grid (starts at ``k * stride + tile_offset`` in scene
pixels), and each tile runs once (see ``_tiling``): a shard's own tiles are blended
with the pieces of the shared tiles that reach it, so a pixel sums the same tiles
with the same inputs whether the scene is processed whole or shard by shard, and
chunked output equals whole-image output. Scene edges are mirrored ('symmetric').

On a GPU, DN go to the device as stored (uint16: a quarter of float32's bytes) from
pinned host memory; tiles go through the model in batches of up to ``batch``, halved
when the device runs out of memory (the limit learned is kept for the model).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import torch

from models import (
    Adapter,
    ModelError,
    ModelSpec,
    Radiometry,
    call_batch,
    model_inputs,
    to_device,
    valid_pixels,
)

from ._tiling import Rect, Shard, TilePlan, reflect, tile_starts

NODATA_CLASS = 255
Reader = Callable[[int, int, int, int], np.ndarray]  # (y0, y1, x0, x1) -> stored DN
Tensor = torch.Tensor

# the largest batch each model instance has run without running out of device memory
_FITS: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()


def blend_window(tile: int, halo: int) -> np.ndarray:
    """1-D weights: sin^2 ramps over the ``2 * halo`` pixels that neighbouring tiles
    share, 1 elsewhere. Overlapping ramps sum to exactly 1 (a partition of unity)."""
    w = np.ones(tile, dtype=np.float64)
    if halo:
        t = np.arange(2 * halo)
        ramp = np.sin(np.pi * (t + 0.5) / (4 * halo)) ** 2
        w[: 2 * halo] = ramp
        w[tile - 2 * halo:] = ramp[::-1]
    return w.astype(np.float32)


def model_probs(adapter: Adapter, tiles: Tensor, batch: int) -> Tensor:
    """Class probabilities (N, K, T, T) of ``tiles`` in model calls of at most ``batch``
    tiles; on running out of device memory the batch halves and the call is retried."""
    n = tiles.shape[0]
    out = torch.empty((n, adapter.spec.num_classes, *tiles.shape[2:]), dtype=torch.float32,
                      device=tiles.device)
    i = 0
    while i < n:
        b = min(batch, _FITS.get(adapter, batch), n - i)
        try:
            out[i:i + b] = adapter.probabilities(tiles[i:i + b])
        except torch.OutOfMemoryError:
            if b == 1:
                raise ModelError(
                    f"model {adapter.spec.model_id} does not fit in {adapter.device}'s memory "
                    f"even for one {adapter.spec.tile} px tile: free the device or use "
                    "--device cpu") from None
            _FITS[adapter] = b // 2
            if tiles.device.type == "cuda":
                torch.cuda.empty_cache()
            continue
        i += b
    return out


def _add_tiles(acc: Tensor, at: tuple[int, int], x: Tensor, origin: tuple[int, int],
               ys: Sequence[int], xs: Sequence[int], adapter: Adapter, batch: int | None
               ) -> None:
    """Add the blend-weighted probabilities of tiles ``ys`` x ``xs`` (global starts, on
    the stride grid) to ``acc`` (K, h, w), whose first pixel is scene pixel ``at``;
    ``x`` holds the model inputs from scene pixel ``origin`` on and covers every tile.
    Whole rows of tiles are cut out of ``x`` at once (one copy), at least ``batch``
    tiles' worth, then run in model calls of ``batch``."""
    spec = adapter.spec
    T, S = spec.tile, spec.stride
    oy, ox = origin
    y0, x0 = at
    h, w = acc.shape[1:]
    if ys[0] < oy or xs[0] < ox or ys[-1] + T > oy + x.shape[1] or xs[-1] + T > ox + x.shape[2]:
        raise ValueError("block lacks the context its tiles need")
    w1 = torch.from_numpy(blend_window(T, spec.halo)).to(acc.device)
    w2 = w1[:, None] * w1[None, :]
    batch = batch or call_batch(adapter)
    nx = len(xs)
    rows = max(1, batch // nx)
    cols = x[:, :, xs[0] - ox:xs[-1] - ox + T]
    for r in range(0, len(ys), rows):
        band = ys[r:r + rows]
        strip = cols[:, band[0] - oy:band[-1] - oy + T]
        tiles = strip.unfold(1, T, S).unfold(2, T, S)  # (C, rows, nx, T, T), a view
        tiles = tiles.permute(1, 2, 0, 3, 4).reshape(len(band) * nx, x.shape[0], T, T)
        probs = model_probs(adapter, tiles, batch)
        del tiles
        for i, p in enumerate(probs):
            ty, tx = band[i // nx], xs[i % nx]
            r0, r1 = max(ty, y0), min(ty + T, y0 + h)
            c0, c1 = max(tx, x0), min(tx + T, x0 + w)
            if r0 >= r1 or c0 >= c1:
                continue
            acc[:, r0 - y0:r1 - y0, c0 - x0:c1 - x0].addcmul_(
                p[:, r0 - ty:r1 - ty, c0 - tx:c1 - tx], w2[r0 - ty:r1 - ty, c0 - tx:c1 - tx])


def region_inputs(read: Reader, names: Sequence[str], spec: ModelSpec, radiometry: Radiometry,
                  region: Rect, scene_shape: tuple[int, int], device: torch.device,
                  keep: Rect | None = None) -> tuple[Tensor, Tensor | None]:
    """Model inputs (C, h, w) on ``device`` over ``region``, which may leave the scene
    (mirrored in, as the whole-image pass pads), and the valid mask over ``keep``
    (inside the scene).

    ``read`` is called once, for the scene pixels the region and ``keep`` need.
    """
    H, W = scene_shape
    y0, y1, x0, x1 = read_span(region, scene_shape, keep)
    raw = to_device(read(y0, y1, x0, x1), device)
    v = None if keep is None else valid_pixels(
        raw[:, keep[0] - y0:keep[1] - y0, keep[2] - x0:keep[3] - x0], radiometry)
    r0, r1, c0, c1 = region
    iy, ix = reflect(np.arange(r0, r1), H), reflect(np.arange(c0, c1), W)
    a0, a1, b0, b1 = max(r0, 0), min(r1, H), max(c0, 0), min(c1, W)
    if not ((a0 <= iy) & (iy < a1)).all() or not ((b0 <= ix) & (ix < b1)).all():
        # the mirror reaches scene pixels outside the region (a scene narrower than the
        # region's margin): mirror the stored DN, then make the inputs
        raw = _take(_take(raw, iy - y0, 1), ix - x0, 2)
        return model_inputs(raw, names, spec, radiometry)[0], v
    # the inputs of the region's scene pixels, made in place; its margins beyond the
    # scene (inputs are per pixel, so mirroring them equals mirroring the DN) copied in
    x = torch.empty((spec.in_channels, r1 - r0, c1 - c0), dtype=torch.float32,
                    device=raw.device)
    model_inputs(raw[:, a0 - y0:a1 - y0, b0 - x0:b1 - x0], names, spec, radiometry,
                 out=x[:, a0 - r0:a1 - r0, b0 - c0:b1 - c0])
    cols = slice(b0 - c0, b1 - c0)
    for rows in (slice(0, a0 - r0), slice(a1 - r0, r1 - r0)):
        if rows.stop > rows.start:
            x[:, rows, cols] = x[:, _index(iy[rows] - r0, x.device), cols]
    for cs in (slice(0, b0 - c0), slice(b1 - c0, c1 - c0)):
        if cs.stop > cs.start:
            x[:, :, cs] = x[:, :, _index(ix[cs] - c0, x.device)]
    return x, v


def _index(idx: np.ndarray, device: torch.device) -> Tensor:
    return torch.from_numpy(np.ascontiguousarray(idx)).to(device)


def read_span(region: Rect, scene_shape: tuple[int, int], keep: Rect | None = None) -> Rect:
    """The scene pixels that :func:`region_inputs` reads for ``region`` and ``keep``."""
    H, W = scene_shape
    iy = reflect(np.arange(region[0], region[1]), H)
    ix = reflect(np.arange(region[2], region[3]), W)
    y0, y1, x0, x1 = int(iy.min()), int(iy.max()) + 1, int(ix.min()), int(ix.max()) + 1
    if keep is not None:
        y0, y1, x0, x1 = min(y0, keep[0]), max(y1, keep[1]), min(x0, keep[2]), max(x1, keep[3])
    return y0, y1, x0, x1


def _take(x: Tensor, idx: np.ndarray, axis: int) -> Tensor:
    """``x`` at ``idx`` along ``axis``, where ``idx`` is mirrored coordinates: runs of
    indices stepping by +1 or -1. A view where it is one straight run; else one copy of
    slices (reversed ones flipped), far cheaper than a gather on a CPU."""
    if x.dtype == torch.uint16:  # torch copies uint16 only as its bits
        return _take(x.view(torch.int16), idx, axis).view(torch.uint16)
    if not len(idx):
        return x.narrow(axis, 0, 0)
    step = np.diff(idx)
    if (step == 1).all():
        return x.narrow(axis, int(idx[0]), len(idx))
    if not np.isin(step, (-1, 0, 1)).all():
        return x.index_select(axis, torch.from_numpy(idx).to(x.device))
    starts = [0]  # runs of one direction; a repeated index (the mirror's edge) starts one
    for k in range(1, len(idx)):
        if step[k - 1] == 0 or (k - starts[-1] >= 2 and step[k - 1] != step[k - 2]):
            starts.append(k)
    parts = []
    for a, b in zip(starts, [*starts[1:], len(idx)], strict=True):
        part = x.narrow(axis, int(idx[a:b].min()), b - a)
        parts.append(part.flip(axis) if b - a > 1 and idx[a + 1] < idx[a] else part)
    return torch.cat(parts, dim=axis)


def tiles_region(ys: Sequence[int], xs: Sequence[int], tile: int) -> Rect:
    """Pixels (some maybe beyond the scene) that the tiles ``ys`` x ``xs`` take in."""
    return ys[0], ys[-1] + tile, xs[0], xs[-1] + tile


def shared_probs(read: Reader, names: Sequence[str], adapter: Adapter, radiometry: Radiometry,
                 plan: TilePlan, ys: Sequence[int], xs: Sequence[int],
                 batch: int | None = None) -> tuple[Rect, Tensor]:
    """The blend-weighted probabilities (K, h, w) of shared tiles ``ys`` x ``xs`` over
    the scene pixels they cover (not yet divided by the weight sum), on the device."""
    region = tiles_region(ys, xs, plan.tile)
    ext = plan.extent(list(ys), list(xs))
    x, _ = region_inputs(read, names, adapter.spec, radiometry, region,
                         (plan.height, plan.width), adapter.device)
    acc = torch.zeros((adapter.spec.num_classes, ext[1] - ext[0], ext[3] - ext[2]),
                      dtype=torch.float32, device=adapter.device)
    _add_tiles(acc, (ext[0], ext[2]), x, (region[0], region[2]), ys, xs, adapter, batch)
    return ext, acc


def shard_probs(read: Reader, names: Sequence[str], adapter: Adapter, radiometry: Radiometry,
                plan: TilePlan, shard: Shard, pieces: Iterable[tuple[Rect, np.ndarray]],
                batch: int | None = None) -> tuple[Tensor, Tensor]:
    """Probabilities (K, h, w) and valid mask (h, w) of one shard, on the device: its
    inner tiles, plus the ``pieces`` of shared tiles that reach it (from
    :func:`shared_probs`, as host arrays)."""
    spec = adapter.spec
    dev = adapter.device
    win = plan.window(shard)
    y0, y1, x0, x1 = win
    ys, xs = plan.inner(shard)
    acc = torch.zeros((spec.num_classes, y1 - y0, x1 - x0), dtype=torch.float32, device=dev)
    region = tiles_region(ys, xs, spec.tile) if ys and xs else win
    x, valid = region_inputs(read, names, spec, radiometry, region, (plan.height, plan.width),
                             dev, keep=win)
    if ys and xs:
        _add_tiles(acc, (y0, x0), x, (region[0], region[2]), ys, xs, adapter, batch)
    del x
    for (r0, r1, c0, c1), piece in pieces:
        acc[:, r0 - y0:r1 - y0, c0 - x0:c1 - x0] += to_device(piece, dev)
    w1 = blend_window(spec.tile, spec.halo)
    acc /= torch.from_numpy(np.outer(_weight_sum(y0, y1, spec, w1),
                                     _weight_sum(x0, x1, spec, w1))).to(dev)
    assert valid is not None  # keep was given
    return acc, valid


def _weight_sum(a0: int, a1: int, spec: ModelSpec, w1: np.ndarray) -> np.ndarray:
    """Blend weights of every tile touching [a0, a1), summed along one axis (the 2-D
    weights are separable, so their sum is the outer product of two of these)."""
    out = np.zeros(a1 - a0, np.float32)
    for t in tile_starts(a0, a1, spec.tile, spec.stride, spec.tile_offset):
        r0, r1 = max(t, a0), min(t + spec.tile, a1)
        out[r0 - a0:r1 - a0] += w1[r0 - t:r1 - t]
    return out


def predict_scene(raw: np.ndarray, names: Sequence[str], adapter: Adapter,
                  radiometry: Radiometry, batch: int | None = None) -> tuple[Tensor, Tensor]:
    """Probabilities (K, H, W) and valid mask of a whole scene held in memory (``raw``:
    stored DN), as one shard: the reference that chunked output equals."""
    H, W = raw.shape[1:]
    plan = TilePlan.of(adapter.spec, (H, W), max(H, W))
    return shard_probs(lambda y0, y1, x0, x1: raw[:, y0:y1, x0:x1], names, adapter,
                       radiometry, plan, (0, 0), (), batch)


def _u8(v: Tensor) -> Tensor:
    """Values in [0, 1] as uint8 x/255, rounded half to even (as ``np.rint``)."""
    return torch.round(v.clamp(0, 1) * 255).to(torch.uint8)


def _first_argmax(probs: Tensor) -> Tensor:
    """``probs.argmax(0)`` as uint8 (the first class among equals), class by class: on a
    CPU a reduction over the outer axis is ~30x slower than K elementwise passes."""
    if probs.device.type != "cpu":
        return probs.argmax(dim=0).to(torch.uint8)
    best = probs[0].clone()
    cls = torch.zeros(probs.shape[1:], dtype=torch.uint8)
    for k in range(1, probs.shape[0]):
        better = probs[k] > best
        cls.masked_fill_(better, k)
        torch.maximum(best, probs[k], out=best)
    return cls


def products(probs: Tensor, valid: Tensor, names: Sequence[str]) -> dict[str, np.ndarray]:
    """Quantized mask products (host uint8 arrays) from probabilities (K, h, w), computed
    where ``probs`` is."""
    out: dict[str, Tensor] = {}
    k = probs.shape[0]
    invalid = ~valid
    out["class"] = _first_argmax(probs).masked_fill_(invalid, NODATA_CLASS)
    if "probability" in names:
        out["probability"] = _u8(probs).masked_fill_(invalid, 0)
    if "entropy" in names:
        p = probs.clamp(1e-12, 1)
        ent = -(p * torch.log(p)).sum(dim=0) / float(np.log(k))
        del p
        out["entropy"] = _u8(ent).masked_fill_(invalid, 0)
    if "margin" in names:
        top = probs.topk(2, dim=0).values
        out["margin"] = _u8(top[0] - top[1]).masked_fill_(invalid, 0)
    return {name: v.cpu().numpy() for name, v in out.items()}
