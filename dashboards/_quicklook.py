"""Quicklook images: an RGB stretch and a class overlay as RGBA PNGs (pure numpy)."""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np

NODATA = 255
OVERLAY_ALPHA = 150
CLEAR = frozenset({"clear", "background", "none", "no_data", "nodata", "unlabelled"})


def stride_for(shape: tuple[int, int], max_side: int) -> int:
    """The pixel step that fits ``shape`` into ``max_side`` pixels."""
    return max(1, -(-max(shape) // max_side))


def rgb_quicklook(rgb: np.ndarray, low: float = 2.0, high: float = 98.0) -> np.ndarray:
    """(3, h, w) reflectance with NaN as nodata -> (h, w, 4) uint8; each band is
    stretched between its ``low`` and ``high`` percentiles; nodata is transparent."""
    valid = np.all(np.isfinite(rgb), axis=0)
    out = np.zeros((*rgb.shape[1:], 4), np.uint8)
    if not valid.any():
        return out
    for i in range(3):
        band = rgb[i][valid]
        lo, hi = np.percentile(band, [low, high])
        scaled = (rgb[i] - lo) / max(hi - lo, 1e-6)
        out[..., i] = np.where(valid, np.clip(scaled * 255, 0, 255), 0).astype(np.uint8)
    out[..., 3] = np.where(valid, 255, 0)
    return out


def class_overlay(classes: np.ndarray, names: Sequence[str], colors: Sequence[str]
                  ) -> np.ndarray:
    """(h, w) uint8 class ids (255 = nodata) -> (h, w, 4) uint8 in the class colours;
    nodata and "clear"-like classes stay transparent, so the scene shows through."""
    lut = np.zeros((256, 4), np.uint8)
    for i, (n, c) in enumerate(zip(names, colors, strict=True)):
        lut[i, :3] = hex_rgb(c)
        lut[i, 3] = 0 if is_clear(n) else OVERLAY_ALPHA
    return lut[classes]


def is_clear(name: str) -> bool:
    return name.lower().replace(" ", "_") in CLEAR


def hex_rgb(color: str) -> tuple[int, int, int]:
    c = color.lstrip("#")
    return int(c[0:2], 16), int(c[2:4], 16), int(c[4:6], 16)


NAMED = {"water": "#1f78b4", "vegetation": "#33a02c", "forest": "#1b7837",
         "built-up": "#e31a1c", "bare": "#ff7f00", "other": "#9e9e9e", "clear": "#b2df8a",
         "cloud": "#f0f0f0", "shadow": "#6a3d9a", "snow": "#a6cee3"}
CYCLE = ("#1f78b4", "#33a02c", "#e31a1c", "#ff7f00", "#6a3d9a", "#b15928", "#a6cee3",
         "#b2df8a", "#fb9a99", "#fdbf6f", "#cab2d6", "#ffff99")


def palette(names: Sequence[str]) -> list[str]:
    """Colours for classes that come without any (labels): familiar ones by name."""
    return [NAMED.get(n.lower(), CYCLE[i % len(CYCLE)]) for i, n in enumerate(names)]


def png(rgba: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, format="PNG", optimize=True)
    return buf.getvalue()
