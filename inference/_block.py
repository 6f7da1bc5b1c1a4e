"""The pure block functions: normalize, mirror scene edges, tile, batch, blend.

Tiles sit on one global grid (starts at ``k * stride + tile_offset`` in scene
pixels), and each tile runs once (see ``_tiling``): a shard's own tiles are blended
with the pieces of the shared tiles that reach it, so a pixel sums the same tiles
with the same inputs whether the scene is processed whole or shard by shard, and
chunked output equals whole-image output. Scene edges are mirrored ('symmetric').
The store is reached only through a ``read`` callable. No I/O here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import numpy as np

from models import Adapter, ModelSpec, Radiometry, call_batch, model_inputs

from ._tiling import Rect, Shard, TilePlan, reflect, tile_starts

NODATA_CLASS = 255


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


def _add_tiles(acc: np.ndarray, at: tuple[int, int], x: np.ndarray, origin: tuple[int, int],
               ys: Sequence[int], xs: Sequence[int], adapter: Adapter, batch: int | None
               ) -> None:
    """Add the blend-weighted probabilities of tiles ``ys`` x ``xs`` (global starts) to
    ``acc`` (K, h, w), whose first pixel is scene pixel ``at``; ``x`` holds the model
    inputs from scene pixel ``origin`` on and covers every tile."""
    spec = adapter.spec
    T = spec.tile
    oy, ox = origin
    y0, x0 = at
    h, w = acc.shape[1:]
    if ys[0] < oy or xs[0] < ox or ys[-1] + T > oy + x.shape[1] or xs[-1] + T > ox + x.shape[2]:
        raise ValueError("block lacks the context its tiles need")
    w1 = blend_window(T, spec.halo)
    starts = [(ty, tx) for ty in ys for tx in xs]
    batch = batch or call_batch(adapter)
    for b in range(0, len(starts), batch):
        group = starts[b:b + batch]
        tiles = np.stack([x[:, ty - oy:ty - oy + T, tx - ox:tx - ox + T] for ty, tx in group])
        probs = adapter.predict(tiles)
        for (ty, tx), p in zip(group, probs, strict=True):
            r0, r1 = max(ty, y0), min(ty + T, y0 + h)
            c0, c1 = max(tx, x0), min(tx + T, x0 + w)
            if r0 >= r1 or c0 >= c1:
                continue
            wy, wx = w1[r0 - ty:r1 - ty], w1[c0 - tx:c1 - tx]
            wt = wy[:, None] * wx[None, :]
            acc[:, r0 - y0:r1 - y0, c0 - x0:c1 - x0] += p[:, r0 - ty:r1 - ty, c0 - tx:c1 - tx] * wt


Reader = Callable[[int, int, int, int], np.ndarray]  # (y0, y1, x0, x1) -> stored DN


def region_inputs(read: Reader, names: Sequence[str], spec: ModelSpec, radiometry: Radiometry,
                  region: Rect, scene_shape: tuple[int, int], keep: Rect | None = None
                  ) -> tuple[np.ndarray, np.ndarray | None]:
    """Model inputs (C, h, w) over ``region``, which may leave the scene (mirrored in,
    as the whole-image pass pads), and the valid mask over ``keep`` (inside the scene).

    ``read`` is called once, for the scene pixels the region and ``keep`` need.
    """
    H, W = scene_shape
    iy = reflect(np.arange(region[0], region[1]), H)
    ix = reflect(np.arange(region[2], region[3]), W)
    y0, y1, x0, x1 = read_span(region, scene_shape, keep)
    x, valid = model_inputs(read(y0, y1, x0, x1), names, spec, radiometry)
    v = None if keep is None else valid[keep[0] - y0:keep[1] - y0, keep[2] - x0:keep[3] - x0]
    del valid
    return _take(_take(x, iy - y0, 1), ix - x0, 2), v


def read_span(region: Rect, scene_shape: tuple[int, int], keep: Rect | None = None) -> Rect:
    """The scene pixels that :func:`region_inputs` reads for ``region`` and ``keep``."""
    H, W = scene_shape
    iy = reflect(np.arange(region[0], region[1]), H)
    ix = reflect(np.arange(region[2], region[3]), W)
    y0, y1, x0, x1 = int(iy.min()), int(iy.max()) + 1, int(ix.min()), int(ix.max()) + 1
    if keep is not None:
        y0, y1, x0, x1 = min(y0, keep[0]), max(y1, keep[1]), min(x0, keep[2]), max(x1, keep[3])
    return y0, y1, x0, x1


def _take(x: np.ndarray, idx: np.ndarray, axis: int) -> np.ndarray:
    """``x`` at ``idx`` along ``axis``: a view where the indices run straight."""
    if len(idx) and (np.diff(idx) == 1).all():
        return x[(slice(None),) * axis + (slice(int(idx[0]), int(idx[-1]) + 1),)]
    return np.take(x, idx, axis=axis)


def tiles_region(ys: Sequence[int], xs: Sequence[int], tile: int) -> Rect:
    """Pixels (some maybe beyond the scene) that the tiles ``ys`` x ``xs`` take in."""
    return ys[0], ys[-1] + tile, xs[0], xs[-1] + tile


def shared_probs(read: Reader, names: Sequence[str], adapter: Adapter, radiometry: Radiometry,
                 plan: TilePlan, ys: Sequence[int], xs: Sequence[int],
                 batch: int | None = None) -> tuple[Rect, np.ndarray]:
    """The blend-weighted probabilities (K, h, w) of shared tiles ``ys`` x ``xs`` over
    the scene pixels they cover (not yet divided by the weight sum)."""
    region = tiles_region(ys, xs, plan.tile)
    ext = plan.extent(list(ys), list(xs))
    x, _ = region_inputs(read, names, adapter.spec, radiometry, region, (plan.height, plan.width))
    acc = np.zeros((adapter.spec.num_classes, ext[1] - ext[0], ext[3] - ext[2]), np.float32)
    _add_tiles(acc, (ext[0], ext[2]), x, (region[0], region[2]), ys, xs, adapter, batch)
    return ext, acc


def shard_probs(read: Reader, names: Sequence[str], adapter: Adapter, radiometry: Radiometry,
                plan: TilePlan, shard: Shard, pieces: Iterable[tuple[Rect, np.ndarray]],
                batch: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities (K, h, w) and valid mask (h, w) of one shard: its inner tiles, plus
    the ``pieces`` of shared tiles that reach it (from :func:`shared_probs`)."""
    spec = adapter.spec
    T = spec.tile
    win = plan.window(shard)
    y0, y1, x0, x1 = win
    ys, xs = plan.inner(shard)
    acc = np.zeros((spec.num_classes, y1 - y0, x1 - x0), np.float32)
    region = tiles_region(ys, xs, T) if ys and xs else win
    x, valid = region_inputs(read, names, spec, radiometry, region, (plan.height, plan.width),
                             keep=win)
    if ys and xs:
        _add_tiles(acc, (y0, x0), x, (region[0], region[2]), ys, xs, adapter, batch)
    del x
    for (r0, r1, c0, c1), piece in pieces:
        acc[:, r0 - y0:r1 - y0, c0 - x0:c1 - x0] += piece
    w1 = blend_window(T, spec.halo)
    acc /= np.outer(_weight_sum(y0, y1, spec, w1), _weight_sum(x0, x1, spec, w1))
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
                  radiometry: Radiometry, batch: int | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities (K, H, W) and valid mask of a whole scene held in memory (``raw``:
    stored DN), as one shard: the reference that chunked output equals."""
    H, W = raw.shape[1:]
    plan = TilePlan.of(adapter.spec, (H, W), max(H, W))
    return shard_probs(lambda y0, y1, x0, x1: raw[:, y0:y1, x0:x1], names, adapter,
                       radiometry, plan, (0, 0), (), batch)


def products(probs: np.ndarray, valid: np.ndarray, names: Sequence[str]) -> dict[str, np.ndarray]:
    """Quantized mask products from probabilities (K, h, w)."""
    out: dict[str, np.ndarray] = {}
    k = probs.shape[0]
    cls = np.argmax(probs, axis=0).astype(np.uint8)
    cls[~valid] = NODATA_CLASS
    out["class"] = cls
    if "probability" in names:
        q = np.rint(np.clip(probs, 0, 1) * 255).astype(np.uint8)
        q[:, ~valid] = 0
        out["probability"] = q
    if "entropy" in names:
        p = np.clip(probs, 1e-12, 1)
        ent = -(p * np.log(p)).sum(axis=0) / np.log(k)
        e = np.rint(np.clip(ent, 0, 1) * 255).astype(np.uint8)
        e[~valid] = 0
        out["entropy"] = e
    if "margin" in names:
        top = np.sort(probs, axis=0)[-2:]
        m = np.rint(np.clip(top[1] - top[0], 0, 1) * 255).astype(np.uint8)
        m[~valid] = 0
        out["margin"] = m
    return out
