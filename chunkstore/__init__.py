"""Store URIs and credentials, the bucket layout, Zarr schemas, shard grid and STAC."""

from ._chunks import ChunkReader
from ._grid import ShardGrid
from ._histogram import LABEL_NODATA, chunk_histogram
from ._ids import validate_id, validate_scene_id
from ._layout import (
    LABEL_ARRAYS,
    item_key,
    mask_item_id,
    mask_key,
    model_key,
    run_key,
    scene_key,
)
from ._lock import output_lock
from ._manifest import drop_from_manifest, find_damage, repairs, seal, verify
from ._mask import (
    MaskInfo,
    MaskSchema,
    create_mask,
    done_mask_shards,
    mask_attrs,
    read_mask,
    write_mask_shard,
)
from ._runs import list_runs, new_run_id, write_run
from ._scene import (
    SceneInfo,
    SceneSchema,
    add_label,
    create_scene,
    done_label_shards,
    done_shards,
    label_counts,
    open_scene,
    read_scene,
    scene_attrs,
    shard_stats,
    write_label_shard,
    write_shard,
)
from ._server import start_s3_server
from ._stac import (
    ZARR_MEDIA_TYPE,
    crs_name,
    delete_item,
    find_item,
    footprint_wgs84,
    list_collections,
    list_items,
    read_item,
    refresh_collection,
    scene_item,
    write_item,
)
from ._store import Credentials, Store, open_store, redact_urls
from ._tasks import FirstTasks, run_shard_tasks
from .errors import (
    CorruptObjectError,
    InputError,
    InvalidIdError,
    JobError,
    LockedError,
    NotFoundError,
    SatchunkError,
    StoreError,
)

__all__ = [
    "ChunkReader", "CorruptObjectError", "Credentials", "FirstTasks", "InputError",
    "InvalidIdError", "JobError", "LABEL_ARRAYS", "LABEL_NODATA", "LockedError", "MaskInfo",
    "MaskSchema", "NotFoundError", "SatchunkError", "SceneInfo", "SceneSchema", "ShardGrid",
    "Store", "StoreError", "ZARR_MEDIA_TYPE", "add_label", "chunk_histogram", "create_mask",
    "create_scene", "crs_name", "delete_item", "done_label_shards", "done_mask_shards",
    "done_shards", "drop_from_manifest", "find_damage", "find_item", "footprint_wgs84",
    "item_key", "list_collections", "list_items", "list_runs", "mask_attrs", "mask_item_id",
    "mask_key", "model_key", "new_run_id", "open_scene", "label_counts", "open_store",
    "output_lock", "read_item", "read_mask", "read_scene", "redact_urls", "refresh_collection",
    "repairs", "run_key", "run_shard_tasks", "scene_attrs", "scene_item", "scene_key", "seal",
    "shard_stats", "start_s3_server", "validate_id", "validate_scene_id", "verify",
    "write_item", "write_label_shard", "write_mask_shard", "write_run", "write_shard",
]
