"""Distributed inference: map_overlap over shard-aligned blocks, seamless masks to the store."""

from ._block import (
    NODATA_CLASS,
    Radiometry,
    blend_window,
    context_depth,
    predict_window,
    products,
    tile_starts,
)
from ._job import (
    PRODUCT_NAMES,
    check_item,
    check_products,
    load_checked,
    model_ref,
    predict_item,
    worker_threads,
)
from ._runner import ModelRef, PredictJob, block_edges, mask_graph, worker_model

__all__ = [
    "NODATA_CLASS", "PRODUCT_NAMES", "ModelRef", "PredictJob", "Radiometry", "blend_window",
    "block_edges", "check_item", "check_products", "context_depth", "load_checked", "mask_graph",
    "model_ref", "predict_item", "predict_window", "products", "tile_starts", "worker_model",
    "worker_threads",
]
