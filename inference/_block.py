"""The pure block function: normalize, pad scene edges, tile, batch, blend, trim.

Tiles sit on one global grid (starts at ``k * stride + tile_offset`` in scene
pixels), so a pixel sees the same tiles with the same inputs whether the scene
is processed whole or block by block: chunked output equals whole-image output.
A block carries ``depth = tile - 1`` pixels of context on each side, enough for
every tile that touches its interior; scene edges are padded by mirroring.
No I/O here.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from models import Adapter, ModelSpec, Radiometry, call_batch, model_inputs

NODATA_CLASS = 255


def context_depth(spec: ModelSpec) -> int:
    """Pixels of context a block needs on each side."""
    return spec.tile - 1


def context_window(interior: tuple[int, int, int, int], depth: int,
                   scene_shape: tuple[int, int]) -> tuple[int, int, int, int]:
    """(y0, y1, x0, x1): ``interior`` = (y0, x0, h, w) grown by ``depth`` on every
    side and clipped to the scene; what the clip cuts off is mirrored in later."""
    y0, x0, h, w = interior
    H, W = scene_shape
    return max(y0 - depth, 0), min(y0 + h + depth, H), max(x0 - depth, 0), min(x0 + w + depth, W)


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


def tile_starts(a0: int, a1: int, tile: int, stride: int, offset: int = 0) -> list[int]:
    """Global starts (``k * stride + offset``) of the tiles that touch [a0, a1)."""
    first = -((tile - 1 - a0 + offset) // stride)  # ceil((a0 - tile + 1 - offset) / stride)
    last = (a1 - 1 - offset) // stride
    return [k * stride + offset for k in range(first, last + 1)]


def blend_tiles(x: np.ndarray, origin: tuple[int, int], interior: tuple[int, int, int, int],
                adapter: Adapter, batch: int | None = None) -> np.ndarray:
    """Class probabilities (K, h, w) over ``interior`` = (y0, x0, h, w), scene pixels.

    ``x`` (C, H, W) holds the model inputs of scene pixels starting at ``origin``
    and must cover every tile that touches the interior.
    """
    spec = adapter.spec
    T, S = spec.tile, spec.stride
    y0, x0, h, w = interior
    oy, ox = origin
    w1 = blend_window(T, spec.halo)
    off = spec.tile_offset
    ys, xs = tile_starts(y0, y0 + h, T, S, off), tile_starts(x0, x0 + w, T, S, off)
    if ys[0] < oy or xs[0] < ox or ys[-1] + T > oy + x.shape[1] or xs[-1] + T > ox + x.shape[2]:
        raise ValueError("block lacks the context its tiles need")
    acc = np.zeros((spec.num_classes, h, w), dtype=np.float32)
    wsum = np.zeros((h, w), dtype=np.float32)
    starts = [(ty, tx) for ty in ys for tx in xs]
    batch = batch or call_batch(adapter)
    for b in range(0, len(starts), batch):
        group = starts[b:b + batch]
        tiles = np.stack([x[:, ty - oy:ty - oy + T, tx - ox:tx - ox + T] for ty, tx in group])
        probs = adapter.predict(tiles)
        for (ty, tx), p in zip(group, probs, strict=True):
            r0, r1 = max(ty, y0), min(ty + T, y0 + h)
            c0, c1 = max(tx, x0), min(tx + T, x0 + w)
            wy, wx = w1[r0 - ty:r1 - ty], w1[c0 - tx:c1 - tx]
            wt = wy[:, None] * wx[None, :]
            acc[:, r0 - y0:r1 - y0, c0 - x0:c1 - x0] += p[:, r0 - ty:r1 - ty, c0 - tx:c1 - tx] * wt
            wsum[r0 - y0:r1 - y0, c0 - x0:c1 - x0] += wt
    acc /= wsum
    return acc


def predict_window(raw: np.ndarray, names: Sequence[str], adapter: Adapter,
                   radiometry: Radiometry, origin: tuple[int, int],
                   interior: tuple[int, int, int, int], scene_shape: tuple[int, int],
                   batch: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities (K, h, w) and valid mask (h, w) for ``interior``.

    ``raw`` holds stored DN of scene pixels from ``origin``; what it lacks of the
    context (only ever beyond the scene edges) is mirrored in.
    """
    d = context_depth(adapter.spec)
    y0, x0, h, w = interior
    H, W = scene_shape
    oy, ox = origin
    want_y0, want_y1, want_x0, want_x1 = context_window(interior, d, scene_shape)
    raw = raw[:, want_y0 - oy:want_y1 - oy, want_x0 - ox:want_x1 - ox]
    if raw.shape[1:] != (want_y1 - want_y0, want_x1 - want_x0):
        raise ValueError(f"block data {raw.shape[1:]} does not cover the context it needs")
    x, valid = model_inputs(raw, names, adapter.spec, radiometry)
    del raw  # the caller hands its read over: DN are not needed past the inputs
    pads = ((0, 0), (want_y0 - (y0 - d), (y0 + h + d) - want_y1),
            (want_x0 - (x0 - d), (x0 + w + d) - want_x1))
    x = _mirror(x, pads)
    probs = blend_tiles(x, (y0 - d, x0 - d), interior, adapter, batch)
    v = valid[y0 - want_y0:y0 - want_y0 + h, x0 - want_x0:x0 - want_x0 + w]
    return probs, v


def _mirror(x: np.ndarray, pads: tuple[tuple[int, int], ...]) -> np.ndarray:
    """Mirror-pad (edge pixel repeated: numpy 'symmetric'), repeating for wide pads."""
    while any(p for pair in pads for p in pair):
        step = tuple((min(a, n), min(b, n)) for (a, b), n in zip(pads, x.shape, strict=True))
        x = np.pad(x, step, mode="symmetric")
        pads = tuple((a - sa, b - sb) for (a, b), (sa, sb) in zip(pads, step, strict=True))
    return x


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
