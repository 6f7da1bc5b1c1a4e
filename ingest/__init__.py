"""Raw scenes (GeoTIFF/COG, per-band JP2/TIFF sets, labels) into sharded Zarr + STAC, and
label sources (Landsat QA, Sentinel-2 SCL, spectral indices, prediction masks) written
into ingested scenes."""

from ._job import ShardTask, check_inputs, ingest, ingest_scene, ingest_scenes, run_shard
from ._label_job import LabelPlan, LabelTask, check_label, label_block, label_scene, run_label_shard
from ._label_rules import (
    DEFAULT_THRESHOLDS,
    INDEX_CLASSES,
    QA_CLASSES,
    QA_LAYOUTS,
    SCL_CLASSES,
    index_label,
    parse_thresholds,
    qa_label,
    qa_layout_from_names,
    scl_label,
)
from ._sources import SceneSource, discover

__all__ = [
    "DEFAULT_THRESHOLDS", "INDEX_CLASSES", "QA_CLASSES", "QA_LAYOUTS", "SCL_CLASSES", "LabelPlan",
    "LabelTask", "SceneSource", "ShardTask", "check_inputs", "check_label", "discover",
    "index_label", "ingest", "ingest_scene", "ingest_scenes", "label_block", "label_scene",
    "parse_thresholds", "qa_label", "qa_layout_from_names", "run_label_shard", "run_shard",
    "scl_label",
]
