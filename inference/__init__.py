"""Distributed inference: overlapping shard-aligned blocks, seamless masks to the store."""

from ._block import (
    NODATA_CLASS,
    Radiometry,
    blend_window,
    context_depth,
    context_window,
    predict_window,
    products,
    tile_starts,
)
from ._cog import export_cog
from ._job import (
    PRODUCT_NAMES,
    check_item,
    check_products,
    load_checked,
    model_ref,
    predict_item,
    worker_threads,
)
from ._maskref import MaskRef, find_mask
from ._polygons import Pieces, Polygon, merge_pieces, shard_pieces
from ._runner import ModelRef, PredictJob, worker_model
from ._vectorize import check_vector_path, polygon_frame, vectorize_mask

__all__ = [
    "MaskRef", "ModelRef", "NODATA_CLASS", "PRODUCT_NAMES", "Pieces", "Polygon", "PredictJob",
    "Radiometry", "blend_window", "check_item", "check_products", "check_vector_path",
    "context_depth", "context_window", "export_cog", "find_mask", "load_checked",
    "merge_pieces", "model_ref", "polygon_frame", "predict_item", "predict_window", "products",
    "shard_pieces", "tile_starts", "vectorize_mask", "worker_model", "worker_threads",
]
