"""Raw scenes (GeoTIFF/COG, per-band JP2/TIFF sets, labels) into sharded Zarr + STAC, and
label sources (Landsat QA, Sentinel-2 SCL, spectral indices, prediction masks) written
into ingested scenes."""

from ._job import check_inputs, ingest, ingest_scenes
from ._label_job import check_label, label_scene
from ._label_rules import (
    DEFAULT_THRESHOLDS,
    INDEX_CLASSES,
    QA_CLASSES,
    SCL_CLASSES,
    parse_thresholds,
    qa_label,
    qa_layout_from_names,
)
from ._sources import SceneSource

__all__ = [
    "DEFAULT_THRESHOLDS", "INDEX_CLASSES", "QA_CLASSES", "SCL_CLASSES", "SceneSource",
    "check_inputs", "check_label", "ingest", "ingest_scenes", "label_scene",
    "parse_thresholds", "qa_label", "qa_layout_from_names",
]
