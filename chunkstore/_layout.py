"""The bucket layout: every object key satchunk writes is built here. Pure: no I/O."""

from ._ids import validate_id

CATALOG_KEY = "stac/catalog.json"


def collection_key(collection: str) -> str:
    return f"stac/{validate_id(collection, 'collection')}/collection.json"


def item_key(collection: str, item: str) -> str:
    c, i = validate_id(collection, "collection"), validate_id(item, "item id")
    return f"stac/{c}/{i}/{i}.json"


def scene_key(collection: str, item: str) -> str:
    c, i = validate_id(collection, "collection"), validate_id(item, "item id")
    return f"zarr/{c}/{i}.zarr"


def mask_key(collection: str, item: str, model_id: str) -> str:
    c, i = validate_id(collection, "collection"), validate_id(item, "item id")
    return f"masks/{c}/{i}/{validate_id(model_id, 'model id')}.zarr"


def mask_item_id(item: str, model_id: str) -> str:
    """The STAC item id of the mask of ``model_id`` on scene ``item``."""
    return f"{validate_id(item, 'item id')}__{validate_id(model_id, 'model id')}"


def model_key(name: str, version: str) -> str:
    return f"models/{validate_id(name, 'model name')}/{validate_id(version, 'model version')}"


def run_key(run_id: str) -> str:
    return f"runs/{validate_id(run_id, 'run id')}.json"


def lock_key(key: str) -> str:
    """The lock object of the output at ``key`` (a key built by the functions above)."""
    return f"locks/{key}.json"
