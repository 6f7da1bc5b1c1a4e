"""The life of one mask, shared by the client (scenes of several shards) and the chip
tasks (scenes of one shard): the checked scene, the mask's plan, and its commit."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from chunkstore import (
    MaskSchema,
    SceneInfo,
    Store,
    StoreError,
    create_mask,
    delete_item,
    done_mask_shards,
    find_damage,
    item_key,
    mask_attrs,
    mask_item_id,
    mask_key,
    output_lock,
    repairs,
    seal,
    write_item,
)
from models import Adapter

from ._mask_item import mask_item
from ._parts import parts_prefix
from ._runner import ModelRef

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Checked:
    """A scene item that passed the checks: its STAC item, the scene Zarr's metadata,
    and which of its bands feed the model (indices and the model's names)."""

    scene: dict[str, Any]
    info: SceneInfo
    idx: tuple[int, ...]
    names: tuple[str, ...]
    committed: bool | None = None  # this model's mask item was listed (None: not listed)


@dataclass(frozen=True)
class MaskPlan:
    """What one item's mask is: key, item id, schema (with its fingerprint), summary."""

    key: str
    item_id: str
    schema: MaskSchema
    summary: dict[str, Any]

    @property
    def fingerprint(self) -> Any:
        return self.schema.attrs["fingerprint"]


def mask_plan(store: Store, c: Checked, ref: ModelRef, adapter: Adapter,
               products: Sequence[str]) -> MaskPlan:
    spec, info, item = adapter.spec, c.info, c.scene["id"]
    collection = c.scene["collection"]
    model_id = spec.model_id
    mkey = mask_key(collection, item, model_id)
    fingerprint = {"model_ref": ref.ref, "model": spec.to_dict(), "products": list(products),
                   "scene": info.attrs.get("satchunk", {}).get("fingerprint"),
                   "nodata": "any-model-band", "tiles": "each-once"}
    schema = MaskSchema(grid=info.grid, crs_wkt=info.crs_wkt, transform=info.transform,
                        classes=spec.classes, colors=spec.colors, products=tuple(products),
                        attrs={"fingerprint": fingerprint, "model_id": model_id,
                               "scene": item, "collection": collection})
    g = info.grid
    summary = {"collection": collection, "item": item, "model_id": model_id,
               "mask": store.url(mkey), "mask_item": mask_item_id(item, model_id),
               "products": list(products), "shards": g.n_shards[0] * g.n_shards[1]}
    return MaskPlan(mkey, mask_item_id(item, model_id), schema, summary)


def commit_prediction(store: Store, c: Checked, plan: MaskPlan, ref: ModelRef,
                      spec: Any, run: Callable[[list[tuple[int, int]], ModelRef], None],
                      refresh: bool = True) -> dict[str, Any]:
    """The life of one mask: nothing to do if the same request is committed; else, under
    the mask's lock, lay it out (or keep the shards of an interrupted run of the same
    request), ``run`` the shards left, and commit its STAC item."""
    t0 = time.perf_counter()
    store_key, collection, item = plan.key, c.scene["collection"], c.scene["id"]

    def state(listed: list[str] | None = None) -> tuple[bool, bool]:
        """(the mask's layout matches this request, its item is committed); ``listed``:
        the mask's objects, just listed (no group object there: no layout to read)"""
        group = listed is None or f"{store_key}/zarr.json" in listed
        attrs = ((mask_attrs(store, store_key) if group else None) or {}).get("satchunk", {})
        return (attrs.get("fingerprint") == plan.fingerprint,
                store.exists(item_key(collection, plan.item_id)))

    def exists() -> dict[str, Any]:
        return {**plan.summary, "status": "exists", "written_shards": 0,
                "seconds": round(time.perf_counter() - t0, 3)}

    if c.committed is not False:  # else nothing was committed moments ago: to the lock
        same, committed = state()
        if same and committed and find_damage(store, store_key) == []:
            return exists()
    with output_lock(store, store_key, f"mask {store.url(store_key)}") as lock:
        # one listing: whether a layout is there, its finished shards, what a new one replaces
        listed = store.list(store_key)
        same, committed = state(listed)  # again: another job may have finished it meanwhile
        redo: set[tuple[int, int]] | None = set()
        if same and committed:
            redo, why = repairs(store, store_key)
            if redo == set():
                return exists()
            log.warning("repairing mask %s: %s; rewriting %s", plan.item_id, why,
                        "it whole" if redo is None else f"{len(redo)} shard(s)")
            same = redo is not None
        if committed and not same:
            delete_item(store, collection, plan.item_id)
        done = done_mask_shards(store, store_key, listed) - (redo or set()) if same else set()
        if not same:
            if plan.summary["shards"] > 1:
                store.delete(parts_prefix(store_key))
            create_mask(store, store_key, plan.schema, listed)
        left = [s for s in c.info.grid.shards() if s not in done]
        run(left, ref)
        lock.confirm(f"mask {store.url(store_key)}")
        seal(store, store_key)
        seconds = round(time.perf_counter() - t0, 3)
        mitem = mask_item(c.scene, plan.item_id, store.url(store_key),
                          f"../{item}/{item}.json", spec.to_dict(), plan.schema.products,
                          datetime.now(UTC),
                          {"satchunk:seconds": seconds, "satchunk:model_ref": ref.ref})
        write_item(store, mitem, refresh=refresh)  # the commit
        if plan.summary["shards"] > 1:
            _drop_parts(store, store_key)
    return {**plan.summary, "status": "repaired" if redo else "predicted",
            "written_shards": len(left),
            "seconds": seconds}


def _drop_parts(store: Store, mkey: str) -> None:
    """Delete the pieces of a committed mask; one that stays is only wasted space."""
    try:
        store.delete(parts_prefix(mkey))
    except StoreError as exc:
        log.warning("could not delete %s (%s): delete it by hand",
                    store.url(parts_prefix(mkey)), exc)


