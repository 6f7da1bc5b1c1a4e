"""Find a committed mask in the store: its item, key, grid and georeferencing."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from chunkstore import (
    InputError,
    MaskInfo,
    NotFoundError,
    Store,
    find_item,
    mask_item_id,
    mask_key,
    read_mask,
    validate_id,
)


@dataclass(frozen=True, kw_only=True)
class MaskRef(MaskInfo):
    """A committed mask: what :func:`chunkstore.read_mask` reads, and whose it is."""

    collection: str
    item: str
    model_id: str


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
        find_item(store, mask_item_id(item, model_id), col)
    except NotFoundError:
        have = store.list_dirs(f"masks/{col}/{item}")
        ids = sorted(h[:-5] for h in have if h.endswith(".zarr"))
        hint = (f"masks of {item}: {', '.join(ids)}" if ids
                else f"run `satchunk predict {item} --model ...` first")
        raise NotFoundError(f"no finished mask of model {model_id!r} on {col}/{item}: "
                            f"{hint}") from None
    info = read_mask(store, mask_key(col, item, model_id))
    return MaskRef(**{f.name: getattr(info, f.name) for f in fields(info)}, collection=col,
                   item=item, model_id=model_id)


def open_mask_array(store: Store, ref: MaskRef, product: str) -> Any:
    import zarr

    return zarr.open_array(store.zarr_store(f"{ref.key}/{product}", read_only=True),
                           zarr_format=3, mode="r")
