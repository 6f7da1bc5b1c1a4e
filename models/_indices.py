"""Derived spectral-index channels, on torch tensors (any device). Pure.

Each index is a normalized difference of reflectances, 0 where the
denominator is 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

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


def spectral_index(name: str, bands: Mapping[str, Any]) -> Any:
    """Index ``name`` from float32 reflectance by common band name: torch tensors (any
    device) give a tensor, numpy arrays an array."""
    import numpy as np
    import torch

    if isinstance(next(iter(bands.values())), np.ndarray):
        out = spectral_index(name, {b: torch.from_numpy(np.asarray(v, np.float32))
                                    for b, v in bands.items()})
        return out.numpy()
    plus, minus = FORMULAS[name]
    p, m = bands[plus[0]], bands[minus[0]]
    for b in plus[1:]:
        p = p + bands[b]
    for b in minus[1:]:
        m = m + bands[b]
    num, den = p - m, p + m
    return torch.where(den != 0, num / torch.where(den != 0, den, 1), 0.0)
