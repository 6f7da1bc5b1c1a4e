"""Per-inner-chunk label statistics. Pure: no I/O.

``label_histogram[sy, sx, iy, ix, k]`` counts pixels of class ``k`` in inner
chunk ``(iy, ix)`` of shard ``(sy, sx)``; the balanced sampler plans from it
without reading pixels. Nodata (255) is not counted.
"""

from __future__ import annotations

import numpy as np

LABEL_NODATA = 255


def chunk_histogram(label: np.ndarray, chunk: int, n_inner: int, n_classes: int) -> np.ndarray:
    """Counts per inner chunk of one shard's label block.

    ``label`` is the (h, w) block of one shard (h, w <= chunk * n_inner); the
    result has shape (n_inner, n_inner, n_classes), zeros beyond the scene edge.
    """
    h, w = label.shape
    out = np.zeros((n_inner, n_inner, n_classes), dtype=np.uint32)
    rows = np.arange(h) // chunk
    cols = np.arange(w) // chunk
    cell = rows[:, None] * n_inner + cols[None, :]
    lab = label.astype(np.int64)
    valid = lab < n_classes
    idx = cell[valid] * n_classes + lab[valid]
    counts = np.bincount(idx, minlength=n_inner * n_inner * n_classes)
    out[:] = counts.reshape(n_inner, n_inner, n_classes)
    return out
