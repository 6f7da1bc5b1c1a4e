"""Store URIs and credentials, the bucket layout, Zarr schemas, shard grid and STAC."""

from ._grid import ShardGrid
from ._histogram import LABEL_NODATA, chunk_histogram
from ._ids import validate_id
from ._integrity import read_checked
from ._layout import collection_key, item_key, mask_key, model_key, run_key, scene_key
from ._lock import output_lock
from ._mask import (
    MaskSchema,
    create_mask,
    done_mask_shards,
    mask_attrs,
    mask_item,
    write_mask_shard,
)
from ._parts import part_key, parts_prefix, read_part, write_part
from ._redact import RedactingFilter, redact, secrets_of
from ._runs import list_runs, new_run_id, write_run
from ._scene import (
    SceneSchema,
    add_label,
    create_scene,
    done_label_shards,
    done_shards,
    grid_coords,
    open_scene,
    read_georef,
    scene_attrs,
    shard_stats,
    write_label_shard,
    write_shard,
)
from ._server import S3Server, start_s3_server
from ._stac import (
    delete_item,
    find_item,
    footprint_wgs84,
    list_collections,
    list_items,
    read_item,
    scene_item,
    write_item,
)
from ._store import Credentials, Store, open_store
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
    "CorruptObjectError", "Credentials", "FirstTasks", "InputError", "InvalidIdError", "JobError",
    "LABEL_NODATA", "LockedError", "MaskSchema", "NotFoundError", "RedactingFilter", "S3Server",
    "SatchunkError", "SceneSchema", "ShardGrid", "Store", "StoreError", "add_label",
    "chunk_histogram", "collection_key", "create_mask", "create_scene", "delete_item",
    "done_label_shards", "done_mask_shards", "done_shards", "find_item", "footprint_wgs84",
    "grid_coords", "item_key", "list_collections", "list_items", "list_runs", "mask_attrs",
    "mask_item", "mask_key", "model_key", "new_run_id", "open_scene", "open_store", "output_lock",
    "part_key", "parts_prefix", "read_part",
    "read_checked", "read_georef", "read_item", "redact", "run_key", "run_shard_tasks",
    "scene_attrs", "scene_item", "scene_key", "secrets_of", "shard_stats", "start_s3_server",
    "validate_id", "write_item", "write_label_shard", "write_mask_shard", "write_part", "write_run",
    "write_shard",
]
