"""Derived spectral-index channels. Pure numpy.

Each index is a normalized difference of reflectances, 0 where the
denominator is 0.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

# index -> (bands added, bands subtracted) of (sum(plus) - sum(minus)) / (sum(plus) + sum(minus))
FORMULAS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "ndvi": (("nir",), ("red",)),
    "ndwi": (("green",), ("nir",)),  # McFeeters 1996
    "ndbi": (("swir16",), ("nir",)),
    "bsi": (("swir16", "red"), ("nir", "blue")),
}


def index_bands(indices: tuple[str, ...]) -> tuple[str, ...]:
    """The bands the given indices read, in a stable order."""
    out: list[str] = []
    for name in indices:
        plus, minus = FORMULAS[name]
        out += [b for b in (*plus, *minus) if b not in out]
    return tuple(out)


def spectral_index(name: str, bands: Mapping[str, np.ndarray]) -> np.ndarray:
    plus, minus = FORMULAS[name]
    p = sum(bands[b].astype(np.float32) for b in plus)
    m = sum(bands[b].astype(np.float32) for b in minus)
    num, den = p - m, p + m
    out = np.zeros(np.shape(num), dtype=np.float32)
    np.divide(num, den, out=out, where=den != 0)
    return out
