"""Distributed inference: overlapping shard-aligned blocks, seamless masks to the store."""

from ._block import (
    NODATA_CLASS,
    Radiometry,
    blend_window,
    predict_scene,
    products,
    shard_probs,
    shared_probs,
)
from ._cog import export_cog
from ._job import (
    PRODUCT_NAMES,
    check_item,
    check_items,
    check_products,
    check_radiometry,
    check_request,
    load_checked,
    model_ref,
    predict_item,
    predict_items,
    worker_threads,
)
from ._maskref import MaskRef, find_mask
from ._polygons import Pieces, Polygon, merge_pieces, shard_pieces
from ._runner import ModelRef, PredictJob, worker_model
from ._tiling import TilePlan, tile_starts
from ._vectorize import check_vector_path, polygon_frame, vectorize_mask

__all__ = [
    "MaskRef", "ModelRef", "NODATA_CLASS", "PRODUCT_NAMES", "Pieces", "Polygon", "PredictJob",
    "Radiometry", "TilePlan", "blend_window", "check_item", "check_items", "check_products",
    "check_radiometry", "check_request", "check_vector_path", "export_cog", "find_mask",
    "load_checked", "merge_pieces", "model_ref", "polygon_frame", "predict_item", "predict_items",
    "predict_scene", "products", "shard_pieces", "shard_probs", "shared_probs", "tile_starts",
    "vectorize_mask", "worker_model", "worker_threads",
]
