"""``predict``: check the request, lay out the mask, run the graph, commit the STAC item."""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from chunkstore import (
    FirstTasks,
    InputError,
    MaskSchema,
    NotFoundError,
    SceneInfo,
    Store,
    StoreError,
    create_mask,
    delete_item,
    done_mask_shards,
    find_item,
    item_key,
    mask_attrs,
    mask_item_id,
    mask_key,
    open_store,
    output_lock,
    read_scene,
    run_shard_tasks,
    scene_key,
    write_item,
)
from models import Adapter, Radiometry, match_bands

from ._mask_item import mask_item
from ._parts import parts_prefix
from ._runner import (
    ModelRef,
    PredictJob,
    ShardPrediction,
    SharedTiles,
    predict_shard,
    predict_shared,
    task_key,
)
from ._tiling import TilePlan

PRODUCT_NAMES = ("class", "probability", "entropy", "margin")
log = logging.getLogger(__name__)


def check_products(products: Sequence[str] | None) -> tuple[str, ...]:
    names = set(["class", *(products or [])])
    bad = sorted(p for p in names if p not in PRODUCT_NAMES)
    if bad:
        raise InputError(f"unknown product(s) {', '.join(bad)}: choose from "
                         f"{', '.join(PRODUCT_NAMES)}")
    return tuple(p for p in PRODUCT_NAMES if p in names)  # one order: one fingerprint


def model_ref(ref: str, store: Store, threads: int = 1) -> ModelRef:
    """Resolve a ``--model`` value; checkpoints under ``s3://`` use the store's endpoint
    and credentials."""
    ref = ref.rstrip("/") or ref  # `.../models/lc/3/` is `.../models/lc/3`
    if ref.startswith("s3://"):
        ckpt = open_store(ref, store.endpoint_url).with_credentials(store.credentials)
        return ModelRef(ref, ckpt.without_credentials(), threads)
    return ModelRef(ref, None, threads)


def load_checked(ref: ModelRef, store: Store) -> Adapter:
    """Load the model on the client once, so a bad reference fails before any write."""
    return ref.load(store.credentials if ref.store is not None else None)


def worker_threads(client: Any, tasks: int | None = None) -> int:
    """Model threads per task: the host's cores shared by the worker threads on it, or
    by ``tasks`` where fewer tasks than worker threads will run (a scene of one shard
    on two single-threaded workers gets both cores for its one task)."""
    workers = client.scheduler_info().get("workers", {})
    per_host: dict[str, int] = {}
    for w in workers.values():
        host = w.get("host", "")
        per_host[host] = per_host.get(host, 0) + int(w.get("nthreads", 1))
    busiest = max(per_host.values(), default=1)
    if tasks is not None:
        busiest = max(1, min(busiest, tasks))
    return max(1, (os.cpu_count() or 1) // busiest)


def check_item(store: Store, item: str, adapter: Adapter, collection: str | None = None
               ) -> tuple[dict[str, Any], tuple[int, ...], tuple[str, ...]]:
    """The scene item, and which of its bands feed the model; refuses what cannot run."""
    scene, _, idx, names = _checked_scene(store, item, adapter, collection)
    return scene, idx, names


def _checked_scene(store: Store, item: str, adapter: Adapter, collection: str | None = None
                   ) -> tuple[dict[str, Any], SceneInfo, tuple[int, ...], tuple[str, ...]]:
    """:func:`check_item`, and the scene Zarr's metadata."""
    scene = find_item(store, item, collection)
    if scene["properties"].get("satchunk:kind") == "mask":
        raise InputError(f"{item} is a mask item, not a scene: predict on its scene "
                         f"{scene['properties'].get('satchunk:scene')}")
    skey = scene_key(scene["collection"], item)
    try:
        info = read_scene(store, skey)
    except NotFoundError:
        raise InputError(f"item {item} has no scene Zarr at {store.url(skey)}: "
                         "re-ingest it") from None
    idx, names = match_bands(adapter.spec, list(info.bands), item)
    return scene, info, idx, names


def predict_item(store: Store, client: Any, item: str, ref: ModelRef, adapter: Adapter, *,
                 collection: str | None = None, products: Sequence[str] = ("class",),
                 batch: int | None = None, progress: bool = True,
                 resources: dict[str, float] | None = None) -> dict[str, Any]:
    """Predict one scene item; returns a summary with the mask URI and seconds. Its tasks
    ask the workers for ``resources`` (a share of a GPU on GPU runs)."""
    t0 = time.perf_counter()
    scene, info, idx, names = _checked_scene(store, item, adapter, collection)
    collection = scene["collection"]
    skey = info.key
    spec = adapter.spec
    radiometry = Radiometry(info.scale, info.offset, info.fill)
    grid = info.grid
    H, W, shard = grid.height, grid.width, grid.shard
    model_id = spec.model_id
    mkey = mask_key(collection, item, model_id)
    mitem_id = mask_item_id(item, model_id)
    fingerprint = {"model_ref": ref.ref, "model": spec.to_dict(), "products": list(products),
                   "scene": info.attrs.get("satchunk", {}).get("fingerprint"),
                   "nodata": "any-model-band", "tiles": "each-once"}
    schema = MaskSchema(grid=grid, crs_wkt=info.crs_wkt, transform=info.transform,
                        classes=spec.classes, colors=spec.colors, products=tuple(products),
                        attrs={"fingerprint": fingerprint, "model_id": model_id,
                               "scene": item, "collection": collection})
    summary = {"collection": collection, "item": item, "model_id": model_id,
               "mask": store.url(mkey), "mask_item": mitem_id, "products": list(products),
               "shards": grid.n_shards[0] * grid.n_shards[1]}
    def state() -> tuple[bool, bool]:
        """(the mask's layout matches this request, its item is committed)"""
        attrs = (mask_attrs(store, mkey) or {}).get("satchunk", {})
        return attrs.get("fingerprint") == fingerprint, store.exists(item_key(collection,
                                                                            mitem_id))

    same, committed = state()
    if same and committed:
        return {**summary, "status": "exists", "written_shards": 0,
                "seconds": round(time.perf_counter() - t0, 3)}
    with output_lock(store, mkey, f"mask {store.url(mkey)}") as lock:
        same, committed = state()  # again: another job may have finished it meanwhile
        if same and committed:
            return {**summary, "status": "exists", "written_shards": 0,
                    "seconds": round(time.perf_counter() - t0, 3)}
        if committed:
            delete_item(store, collection, mitem_id)
        done = done_mask_shards(store, mkey) if same else set()
        if not same:
            store.delete(parts_prefix(mkey))
            create_mask(store, mkey, schema)
        left = [(sy, sx) for sy, sx in grid.shards() if (sy, sx) not in done]
        ref = dataclasses.replace(ref, threads=max(
            ref.threads, worker_threads(client, tasks=len(left) or None)))
        job = PredictJob(store.without_credentials(), skey, mkey, idx, names, radiometry,
                         schema, ref, batch)
        first = _shared_tasks(job, TilePlan.of(spec, (H, W), shard), left)
        run_shard_tasks(client, predict_shard, [ShardPrediction(job, *s) for s in left],
                        store.credentials, [f"{task_key(job)}-{sy}-{sx}" for sy, sx in left],
                        [f"shard {sy},{sx} of {collection}/{item}" for sy, sx in left],
                        total=summary["shards"], done=len(done), desc=f"{item} {model_id}",
                        progress=progress, first=first, resources=resources)
        lock.confirm(f"mask {store.url(mkey)}")
        seconds = round(time.perf_counter() - t0, 3)
        mitem = mask_item(scene, mitem_id, store.url(mkey), f"../{item}/{item}.json",
                          spec.to_dict(), products, datetime.now(UTC),
                          {"satchunk:seconds": seconds, "satchunk:model_ref": ref.ref})
        write_item(store, mitem)  # the commit
        _drop_parts(store, mkey)
    return {**summary, "status": "predicted", "written_shards": len(left), "seconds": seconds}


def _drop_parts(store: Store, mkey: str) -> None:
    """Delete the pieces of a committed mask; one that stays is only wasted space."""
    try:
        store.delete(parts_prefix(mkey))
    except StoreError as exc:
        log.warning("could not delete %s (%s): delete it by hand",
                    store.url(parts_prefix(mkey)), exc)


def _shared_tasks(job: PredictJob, plan: TilePlan, left: list[tuple[int, int]]
                  ) -> FirstTasks | None:
    """The border-tile tasks (one per owner and group) whose pieces the ``left`` shards
    need, run before them."""
    sources = {s: plan.sources(s) for s in left}
    groups = sorted({(o, g) for src in sources.values() for o, g, _ in src})
    if not groups:
        return None
    at = {og: i for i, og in enumerate(groups)}
    collection, item = job.schema.attrs["collection"], job.schema.attrs["scene"]
    return FirstTasks(predict_shared, [SharedTiles(job, *o, g) for o, g in groups],
                      [f"{task_key(job)}-border-{oy}-{ox}-{g}" for (oy, ox), g in groups],
                      [f"shard {oy},{ox} of {collection}/{item} (its border tiles)"
                       for (oy, ox), _ in groups],
                      [sorted({at[o, g] for o, g, _ in sources[s]}) for s in left],
                      [len(ys) * len(xs) for ys, xs in map(plan.inner, left)])

