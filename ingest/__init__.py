"""Raw scenes (GeoTIFF/COG, per-band JP2/TIFF sets, labels) into sharded Zarr + STAC."""

from ._job import ShardTask, check_inputs, ingest, ingest_scene, ingest_scenes, run_shard
from ._sources import SceneSource, discover

__all__ = [
    "SceneSource", "ShardTask", "check_inputs", "discover", "ingest", "ingest_scene",
    "ingest_scenes", "run_shard",
]
