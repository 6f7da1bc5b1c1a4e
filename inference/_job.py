"""``predict``: check the request, lay out the mask, run the graph, commit the STAC item."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from chunkstore import (
    CorruptObjectError,
    FirstTasks,
    InputError,
    NotFoundError,
    Store,
    find_item,
    mask_item_id,
    open_store,
    read_scene,
    refresh_collection,
    run_shard_tasks,
    scene_key,
)
from models import (
    Adapter,
    ModelSpec,
    Radiometry,
    check_reflectance,
    input_range,
    is_preset,
    match_bands,
    preset_bands,
)

from ._chips import ChipBatch, predict_chips
from ._commit import Checked, commit_prediction, mask_plan
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
    c = _matched(_scene(store, item, collection), adapter.spec)
    return c.scene, c.idx, c.names


def _scene(store: Store, item: str, collection: str | None = None,
           scene: dict[str, Any] | None = None, committed: bool | None = None) -> Checked:
    """The scene item (``scene``: its STAC dict, when it was read already) and its Zarr's
    metadata, bands not matched yet; refuses a mask item and a missing Zarr."""
    scene = scene or find_item(store, item, collection)
    if scene["properties"].get("satchunk:kind") == "mask":
        raise InputError(f"{item} is a mask item, not a scene: predict on its scene "
                         f"{scene['properties'].get('satchunk:scene')}")
    skey = scene_key(scene["collection"], item)
    try:
        info = read_scene(store, skey)
    except NotFoundError:
        raise InputError(f"item {item} has no scene Zarr at {store.url(skey)}: "
                         "re-ingest it") from None
    return Checked(scene, info, (), (), committed)


def _matched(c: Checked, spec: ModelSpec) -> Checked:
    """``c`` with the scene bands that feed the model; refuses a scene lacking one."""
    idx, names = match_bands(spec, list(c.info.bands), c.scene["id"])
    return dataclasses.replace(c, idx=idx, names=names)


def _scenes(store: Store, items: Sequence[str], collection: str | None,
            listing: Sequence[dict[str, Any]] | None, model_id: str, threads: int = 16
            ) -> list[Checked]:
    """:func:`_scene` for every item, a few at a time (each costs store round trips;
    thousands of chips are checked in seconds, not minutes)."""
    from concurrent.futures import ThreadPoolExecutor

    known = {i["id"]: i for i in listing or ()}

    def one(item: str) -> Checked:
        scene = known.get(item)
        return _scene(store, item, collection, scene,
                      None if scene is None else mask_item_id(item, model_id) in known)

    with ThreadPoolExecutor(max(1, min(threads, len(items)))) as pool:
        return list(pool.map(one, items))


def check_items(store: Store, items: Sequence[str], adapter: Adapter,
                collection: str | None = None, threads: int = 16,
                listing: Sequence[dict[str, Any]] | None = None) -> list[Checked]:
    """:func:`check_item` for every item, and their reflectance against the model's
    range (:func:`check_radiometry`). ``listing``: the items of ``collection`` as just
    listed, so that none is read again, and each scene knows whether this model's mask
    item was committed then."""
    scenes = _scenes(store, items, collection, listing, adapter.spec.model_id, threads)
    return _checked(store, scenes, adapter)


def check_request(store: Store, items: Sequence[str], ref: ModelRef,
                  collection: str | None = None,
                  listing: Sequence[dict[str, Any]] | None = None
                  ) -> tuple[ModelRef, Adapter, list[Checked]]:
    """The model and the scene items of a predict request, all checked before anything
    is written: the model first, then :func:`check_items`. An untrained preset (``unet``,
    ``segformer``) reads the bands the scenes have (:func:`models.preset_bands`)."""
    adapter = load_checked(ref, store)
    scenes = _scenes(store, items, collection, listing, adapter.spec.model_id)
    if is_preset(ref.ref) and ref.bands is None:
        bands = preset_bands([c.info.bands for c in scenes])
        if bands != adapter.spec.bands:
            ref = dataclasses.replace(ref, bands=bands)
            adapter = load_checked(ref, store)
    return ref, adapter, _checked(store, scenes, adapter)


def _checked(store: Store, scenes: Sequence[Checked], adapter: Adapter) -> list[Checked]:
    """The scenes with their bands matched to the model, their reflectance checked."""
    checked = [_matched(c, adapter.spec) for c in scenes]
    check_radiometry(store, checked, adapter.spec)
    return checked


# inner chunks of each group of scenes stored alike that check_radiometry reads
SAMPLE_CHUNKS = 4


def check_radiometry(store: Store, checked: Sequence[Checked], spec: ModelSpec) -> None:
    """Refuse scenes whose reflectance is far outside the range the model's normalization
    was made for, and warn where it is somewhat off (:func:`models.check_reflectance`),
    from up to ``SAMPLE_CHUNKS`` inner chunks of each group of scenes stored alike (one
    collection, bands, dtype, scale, offset, fill). Models without normalization
    (untrained presets) read anything."""
    if input_range(spec) is None:
        return
    groups: dict[tuple[Any, ...], list[Checked]] = {}
    for c in checked:
        i = c.info
        key = (c.scene["collection"], i.bands, i.dtype, i.scale, i.offset, repr(i.fill))
        groups.setdefault(key, []).append(c)
    for group in groups.values():
        first = group[0].info
        warning = check_reflectance(_sample(store, group), Radiometry(
            first.scale, first.offset, first.fill), spec, group[0].scene["id"])
        if warning:
            log.warning(warning)


def _sample(store: Store, group: Sequence[Checked]) -> np.ndarray:
    """Stored DN (C, N) of the model's bands in up to ``SAMPLE_CHUNKS`` inner chunks,
    spread over the first scenes of ``group``."""
    import zarr

    parts: list[np.ndarray] = []
    for c in group:
        g, key = c.info.grid, f"{c.info.key}/reflectance"
        arr = zarr.open_array(store.zarr_store(key, read_only=True), zarr_format=3, mode="r")
        ny, nx = -(-g.height // g.chunk), -(-g.width // g.chunk)
        picks = dict.fromkeys((int(ny * f), int(nx * h)) for f in (0.25, 0.75)
                              for h in (0.25, 0.75))
        for cy, cx in list(picks)[:SAMPLE_CHUNKS - len(parts)]:
            y, x = cy * g.chunk, cx * g.chunk
            try:
                dn = np.asarray(arr[:, y:y + g.chunk, x:x + g.chunk])
            except CorruptObjectError:  # the job's to report, naming the shard
                continue
            parts.append(dn[list(c.idx)].reshape(len(c.idx), -1))
        if len(parts) >= SAMPLE_CHUNKS:
            break
    return np.concatenate(parts, axis=1) if parts else np.empty((len(group[0].idx), 0))


# a task takes one-shard scenes (chips) until it holds about this many pixels: a 2048^2
# shard's worth, so 256^2 chips go 64 to a task
CHIP_PIXELS = 2048 * 2048


def predict_items(store: Store, client: Any, checked: Sequence[Checked], ref: ModelRef,
                  adapter: Adapter, *, products: Sequence[str] = ("class",),
                  batch: int | None = None, progress: bool = True,
                  resources: dict[str, float] | None = None,
                  done: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """Predict checked scene items; one summary each (also handed to ``done`` as each
    finishes). Scenes of several shards run one at a time over the cluster; scenes of
    one shard (chips) go several to a task, each chip predicted and committed whole in
    its task, and the collection's catalog is refreshed once at the end."""
    out: list[dict[str, Any]] = []
    chips = [c for c in checked if c.info.grid.n_shards == (1, 1)]
    big = [c for c in checked if c.info.grid.n_shards != (1, 1)]
    try:
        for c in big:
            out.append(_predict_checked(store, client, c, ref, adapter, products=products,
                                        batch=batch, progress=progress, resources=resources))
            if done:
                done(out[-1])
        if chips:
            for res in _predict_chips(store, client, chips, ref, adapter, products, batch,
                                      progress, resources):
                out.append(res)
                if done:
                    done(res)
    finally:
        if chips:
            for coll in sorted({c.scene["collection"] for c in chips}):
                refresh_collection(store, coll)
    return out


def _predict_chips(store: Store, client: Any, chips: Sequence[Checked], ref: ModelRef,
                   adapter: Adapter, products: Sequence[str], batch: int | None,
                   progress: bool, resources: dict[str, float] | None
                   ) -> list[dict[str, Any]]:
    groups: list[list[Checked]] = [[]]
    pixels = 0
    for c in chips:
        if groups[-1] and pixels + c.info.grid.height * c.info.grid.width > CHIP_PIXELS:
            groups.append([])
            pixels = 0
        groups[-1].append(c)
        pixels += c.info.grid.height * c.info.grid.width
    plans = [[mask_plan(store, c, ref, adapter, products) for c in g] for g in groups]
    tasks = [ChipBatch(store.without_credentials(), tuple(zip(g, p, strict=True)), ref,
                       tuple(products), batch) for g, p in zip(groups, plans, strict=True)]
    first, last = (g[0].scene for g in groups), (g[-1].scene for g in groups)
    coll = chips[0].scene["collection"]
    results = run_shard_tasks(
        client, predict_chips, tasks, store.credentials,
        [f"chips-{hashlib.sha1(t.key().encode()).hexdigest()[:12]}" for t in tasks],
        [f"chips {a['id']} .. {b['id']} of {coll}" for a, b in zip(first, last, strict=True)],
        total=len(tasks), done=0, desc=f"{len(chips)} chips {adapter.spec.model_id}",
        progress=progress, resources=resources)
    return [r for group in results for r in group]


def predict_item(store: Store, client: Any, item: str, ref: ModelRef, adapter: Adapter, *,
                 collection: str | None = None, products: Sequence[str] = ("class",),
                 batch: int | None = None, progress: bool = True,
                 resources: dict[str, float] | None = None) -> dict[str, Any]:
    """Predict one scene item; returns a summary with the mask URI and seconds. Its tasks
    ask the workers for ``resources`` (a share of a GPU on GPU runs)."""
    c = _matched(_scene(store, item, collection), adapter.spec)
    check_radiometry(store, [c], adapter.spec)
    return _predict_checked(store, client, c, ref, adapter, products=products, batch=batch,
                            progress=progress, resources=resources)


def _predict_checked(store: Store, client: Any, c: Checked, ref: ModelRef, adapter: Adapter,
                     *, products: Sequence[str], batch: int | None, progress: bool,
                     resources: dict[str, float] | None) -> dict[str, Any]:
    """One scene over the cluster: its shard tasks, and the border-tile tasks first."""
    plan = mask_plan(store, c, ref, adapter, products)
    spec, grid = adapter.spec, c.info.grid
    collection, item = c.scene["collection"], c.scene["id"]

    def run(left: list[tuple[int, int]], ref: ModelRef) -> None:
        ref = dataclasses.replace(ref, threads=max(
            ref.threads, worker_threads(client, tasks=len(left) or None)))
        job = PredictJob(store.without_credentials(), c.info.key, plan.key, c.idx, c.names,
                         Radiometry(c.info.scale, c.info.offset, c.info.fill), plan.schema,
                         ref, batch)
        first = _shared_tasks(job, TilePlan.of(spec, grid.shape, grid.shard), left)
        run_shard_tasks(client, predict_shard, [ShardPrediction(job, *s) for s in left],
                        store.credentials, [f"{task_key(job)}-{sy}-{sx}" for sy, sx in left],
                        [f"shard {sy},{sx} of {collection}/{item}" for sy, sx in left],
                        total=plan.summary["shards"],
                        done=plan.summary["shards"] - len(left),
                        desc=f"{item} {spec.model_id}", progress=progress, first=first,
                        resources=resources)

    return commit_prediction(store, c, plan, ref, spec, run)


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

