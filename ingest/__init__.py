"""Raw scenes (GeoTIFF/COG, per-band JP2/TIFF sets, labels) into sharded Zarr + STAC."""

from ._job import ShardTask, ingest, ingest_scene, run_shard
from ._sources import SceneSource, discover

__all__ = ["SceneSource", "ShardTask", "discover", "ingest", "ingest_scene", "run_shard"]
