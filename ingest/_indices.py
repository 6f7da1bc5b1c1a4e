"""Spectral indices of reflectance bands. Pure numpy: no I/O.

Every index is a normalized difference ``(sum(plus) - sum(minus)) / (sum(plus) +
sum(minus))`` of reflectances (the same formulas as the model input channels), 0
where the denominator is 0.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

# index -> (bands added, bands subtracted); band names are STAC common names
FORMULAS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "ndwi": (("green",), ("nir",)),  # McFeeters 1996: open water
    "ndvi": (("nir",), ("red",)),  # vegetation
    "ndbi": (("swir16",), ("nir",)),  # built-up (Zha et al. 2003)
    "bsi": (("swir16", "red"), ("nir", "blue")),  # bare soil
}


def index_bands(indices: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """The bands the given indices read, in a stable order."""
    out: list[str] = []
    for name in indices:
        plus, minus = FORMULAS[name]
        out += [b for b in (*plus, *minus) if b not in out]
    return tuple(out)


def spectral_index(name: str, bands: Mapping[str, np.ndarray]) -> np.ndarray:
    """Index ``name`` (float32) of reflectance arrays keyed by common name."""
    plus, minus = FORMULAS[name]
    p = sum(np.asarray(bands[b], dtype=np.float32) for b in plus)
    m = sum(np.asarray(bands[b], dtype=np.float32) for b in minus)
    num, den = p - m, p + m
    out = np.zeros(np.shape(num), dtype=np.float32)
    np.divide(num, den, out=out, where=den != 0)
    return out
