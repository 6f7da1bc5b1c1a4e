"""Find a committed mask in the store: its item, key, grid and georeferencing."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from chunkstore import (
    InputError,
    NotFoundError,
    ShardGrid,
    Store,
    find_item,
    mask_attrs,
    mask_key,
    read_georef,
    validate_id,
)


@dataclass(frozen=True)
class MaskRef:
    collection: str
    item: str
    model_id: str
    key: str
    grid: ShardGrid
    crs_wkt: str
    transform: tuple[float, ...]  # affine a..f
    classes: tuple[str, ...]
    colors: tuple[str, ...]
    products: tuple[str, ...]


def find_mask(store: Store, item: str, model_id: str, collection: str | None = None) -> MaskRef:
    """The mask of ``model_id`` on scene ``item``; only a committed mask (its STAC item
    written) counts."""
    validate_id(model_id, "model id")
    scene = find_item(store, item, collection)
    if scene["properties"].get("satchunk:kind") == "mask":
        raise InputError(f"{item} is a mask item: name its scene "
                         f"{scene['properties'].get('satchunk:scene')} and --model-id")
    col = scene["collection"]
    try:
        find_item(store, f"{item}__{model_id}", col)
    except NotFoundError:
        have = store.list_dirs(f"masks/{col}/{item}")
        ids = sorted(h[:-5] for h in have if h.endswith(".zarr"))
        hint = (f"masks of {item}: {', '.join(ids)}" if ids
                else f"run `satchunk predict {item} --model ...` first")
        raise NotFoundError(f"no finished mask of model {model_id!r} on {col}/{item}: "
                            f"{hint}") from None
    key = mask_key(col, item, model_id)
    attrs = mask_attrs(store, key) or {}
    cmeta = json.loads(store.read_bytes(f"{key}/class/zarr.json"))
    h, w = cmeta["shape"]
    products = tuple(p for p in ("class", "probability", "entropy", "margin")
                     if store.exists(f"{key}/{p}/zarr.json"))
    crs_wkt, transform = read_georef(store, key)
    cattrs: dict[str, Any] = cmeta.get("attributes", {})
    return MaskRef(col, item, model_id, key,
                   ShardGrid(h, w, int(attrs.get("shard", 2048)), int(attrs.get("chunk", 256))),
                   crs_wkt, transform, tuple(cattrs.get("classes", [])),
                   tuple(cattrs.get("colors", [])), products)


def open_mask_array(store: Store, ref: MaskRef, product: str) -> Any:
    import zarr

    return zarr.open_array(store.zarr_store(f"{ref.key}/{product}", read_only=True),
                           zarr_format=3, mode="r")
