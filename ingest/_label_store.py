"""One shard window of an array already in the store: what the label sources made
after ingest (QA, SCL, spectral indices, prediction masks) read."""

from __future__ import annotations

import numpy as np

from chunkstore import Store

from ._target import ShardWindow


def read_window(store: Store, array: str, window: ShardWindow) -> np.ndarray:
    """The (..., y, x) array at key ``array`` inside ``window``: the whole shard in one
    read (a band subset of a sharded array reads chunk by chunk)."""
    import zarr

    arr = zarr.open_array(store.zarr_store(array, read_only=True), mode="r", zarr_format=3)
    return arr[..., window.row:window.row + window.height, window.col:window.col + window.width]
