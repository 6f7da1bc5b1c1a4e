"""Per-shard valid and cloudy pixel counts for the item's estimated cloud cover. Pure.

The estimate is a brightness test: top-of-atmosphere blue reflectance above 0.2,
excluding snow (NDSI >= 0.4) when green and swir16 are present. It is recorded
as an estimate in the item; models in ``inference`` give real cloud masks.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

CLOUD_METHOD = "blue TOA reflectance > 0.2 and NDSI < 0.4 (estimate)"


def shard_counts(block: np.ndarray, bands: Sequence[str], scale: float, offset: float,
                 nodata: float | None, estimate_cloud: bool) -> tuple[int, int]:
    """(valid pixels, cloudy pixels) of a (band, y, x) block of stored DN."""
    if nodata is None:
        valid = np.ones(block.shape[1:], dtype=bool)
    elif isinstance(nodata, float) and np.isnan(nodata):
        valid = ~np.isnan(block).any(axis=0)
    else:
        valid = (block != nodata).all(axis=0)
    n_valid = int(valid.sum())
    if not estimate_cloud or "blue" not in bands:
        return n_valid, 0

    def refl(name: str) -> np.ndarray:
        return block[list(bands).index(name)].astype(np.float32) * scale + offset

    cloud = refl("blue") > 0.2
    if "green" in bands and "swir16" in bands:
        g, s = refl("green"), refl("swir16")
        ndsi = (g - s) / np.maximum(g + s, 1e-6)
        cloud &= ndsi < 0.4
    return n_valid, int((cloud & valid).sum())
