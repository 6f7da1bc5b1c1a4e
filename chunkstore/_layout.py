"""The bucket layout: every object key satchunk writes is built here. Pure: no I/O."""

from ._ids import SEPARATOR, validate_id, validate_scene_id

CATALOG_KEY = "stac/catalog.json"
# arrays of a scene or mask Zarr whose chunks are not on the shard grid
COORDS = frozenset({"x", "y", "band", "classes", "spatial_ref"})
# sharded arrays with a leading axis (bands, classes) before (y, x)
LEADING = frozenset({"reflectance", "probability"})
LABEL_ARRAYS = ("label", "label_histogram")  # a scene's label, remade by `satchunk label`


def collection_key(collection: str) -> str:
    return f"stac/{validate_id(collection, 'collection')}/collection.json"


def item_key(collection: str, item: str) -> str:
    c, i = validate_id(collection, "collection"), validate_id(item, "item id")
    return f"stac/{c}/{i}/{i}.json"


def scene_key(collection: str, item: str) -> str:
    c, i = validate_id(collection, "collection"), validate_scene_id(item)
    return f"zarr/{c}/{i}.zarr"


def mask_key(collection: str, item: str, model_id: str) -> str:
    c, i = validate_id(collection, "collection"), validate_scene_id(item)
    return f"masks/{c}/{i}/{validate_id(model_id, 'model id')}.zarr"


def mask_item_id(item: str, model_id: str) -> str:
    """The STAC item id of the mask of ``model_id`` on scene ``item``."""
    return f"{validate_scene_id(item)}{SEPARATOR}{validate_id(model_id, 'model id')}"


def manifest_key(collection: str, item: str) -> str:
    """The manifest of the Zarr of item ``item`` (a scene's or a mask's), kept with its
    STAC item: every object of the Zarr, its size and content tag."""
    c, i = validate_id(collection, "collection"), validate_id(item, "item id")
    return f"stac/{c}/{i}/manifest.json"


def zarr_item(key: str) -> tuple[str, str, str | None]:
    """(collection, scene id, model id or None) of a key built by :func:`scene_key` or
    :func:`mask_key`, or of a key under one."""
    parts = key.split("/")
    if parts[0] == "zarr" and len(parts) >= 3 and parts[2].endswith(".zarr"):
        return parts[1], parts[2][:-5], None
    if parts[0] == "masks" and len(parts) >= 4 and parts[3].endswith(".zarr"):
        return parts[1], parts[2], parts[3][:-5]
    raise ValueError(f"{key} is not the key of a scene or mask Zarr")


def model_key(name: str, version: str) -> str:
    return f"models/{validate_id(name, 'model name')}/{validate_id(version, 'model version')}"


def run_key(run_id: str) -> str:
    return f"runs/{validate_id(run_id, 'run id')}.json"


def lock_key(key: str) -> str:
    """The lock object of the output at ``key`` (a key built by the functions above)."""
    return f"locks/{key}.json"
