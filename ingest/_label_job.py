"""``label``: write ``label`` and ``label_histogram`` into an ingested scene from
another source: Landsat QA bits, Sentinel-2 SCL, spectral indices, or a finished
prediction mask.

The request is checked completely before anything is written. Then the scene's STAC
item is rewritten without ``satchunk:label_classes`` (a half-relabelled scene is
never seen as labelled), one Dask task per shard reads its source block and writes
its label shard and histogram slot, and the item is written again with the label
classes, source and thresholds: the commit. A re-run with the same source skips
the shards already written; a finished one writes nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from chunkstore import (
    LABEL_ARRAYS,
    LABEL_NODATA,
    Credentials,
    InputError,
    NotFoundError,
    ShardGrid,
    Store,
    add_label,
    done_label_shards,
    drop_from_manifest,
    find_damage,
    find_item,
    mask_item_id,
    mask_key,
    output_lock,
    read_item,
    read_mask,
    read_scene,
    repairs,
    run_shard_tasks,
    scene_key,
    seal,
    validate_id,
    write_item,
    write_label_shard,
)

from ._label_indices import index_source
from ._label_mask import MaskLabel
from ._label_qa import qa_source
from ._label_rules import QA_LAYOUTS, parse_thresholds
from ._label_scl import SclLabel
from ._label_source import LabelSource
from ._target import TargetGrid

log = logging.getLogger("satchunk.label")

SOURCES_HELP = "qa, scl, indices or mask:MODEL_ID"
LABEL_PROPS = ("satchunk:label_classes", "satchunk:label_source", "satchunk:label_thresholds")


@dataclass(frozen=True)
class LabelPlan:
    """A checked label request for one scene."""

    collection: str
    item: str
    key: str  # the scene Zarr
    label: LabelSource
    grid: TargetGrid  # the scene's: where its shard windows lie
    shards: ShardGrid
    source: Mapping[str, Any] = field(hash=False, compare=False)  # recorded on the label
    thresholds: Mapping[str, float] | None = field(default=None, hash=False, compare=False)

    @property
    def name(self) -> str:
        """What the label is made from: indices, qa:c2, scl, mask:<model-id>."""
        return str(self.label.source["from"])

    @property
    def classes(self) -> tuple[str, ...]:
        return self.label.classes


@dataclass(frozen=True)
class LabelTask:
    """What a worker needs to write the label of shard (sy, sx) (no credentials)."""

    label: LabelSource
    grid: TargetGrid
    shards: ShardGrid
    store: Store  # pickles without credentials; they come as an explicit argument
    key: str
    sy: int
    sx: int


def _parse_source(source: str) -> tuple[str, str | None]:
    text = (source or "").strip()
    if text in ("qa", "scl", "indices"):
        return text, None
    if text.startswith("mask:"):
        model_id = text[len("mask:"):].strip()
        if not model_id:
            raise InputError("--from mask: needs the mask's model id, e.g. --from "
                             "mask:ukis-csmask-6b-l1c-1.0.0-6BL1C (see `satchunk catalog ls`: "
                             "ITEM__MODEL-ID)")
        return "mask", validate_id(model_id, "model id")
    raise InputError(f"--from {source!r} is unknown: use {SOURCES_HELP}")


def check_label(store: Store, item: str, source: str, *, collection: str | None = None,
                thresholds: str | Mapping[str, float] | None = None,
                qa_layout: str = "auto") -> LabelPlan:
    """Check a label request without writing anything; every problem is an
    InputError / NotFoundError saying what is wrong and how to fix it."""
    kind, model_id = _parse_source(source)
    if qa_layout not in ("auto", *QA_LAYOUTS):
        raise InputError(f"--qa-layout {qa_layout!r} is unknown: use auto, c2 (Collection 2 "
                         "QA_PIXEL), c1 (Collection 1 BQA) or pre (pre-collection BQA)")
    if qa_layout != "auto" and kind != "qa":
        raise InputError(f"--qa-layout applies to --from qa only, not --from {source}: "
                         "drop it")
    if thresholds is not None and kind != "indices":
        raise InputError(f"--thresholds applies to --from indices only, not --from {source}: "
                         "drop it")
    limits = parse_thresholds(thresholds) if kind == "indices" else None
    scene = find_item(store, item, collection)
    props = scene.get("properties", {})
    if props.get("satchunk:kind") == "mask":
        raise InputError(f"{item} is a mask item, not a scene: label its scene "
                         f"{props.get('satchunk:scene')} (a mask is a source: --from "
                         f"mask:{props.get('satchunk:model_id')})")
    col = scene["collection"]
    skey = scene_key(col, item)
    try:
        info = read_scene(store, skey, check=LABEL_ARRAYS)  # a damaged label is remade
    except NotFoundError:
        raise InputError(f"item {item} has no scene Zarr at {store.url(skey)}: "
                         "re-ingest it") from None
    grid = info.grid
    sat = info.attrs.get("satchunk", {}) or {}
    base = {"scene": sat.get("fingerprint")}
    scene_grid = TargetGrid(info.crs_wkt, info.transform, *grid.shape)

    def plan(label: LabelSource) -> LabelPlan:
        src = {"from": label.source["from"], **base, **label.source}
        return LabelPlan(col, item, skey, label, scene_grid, grid, src, limits)

    if kind in ("qa", "scl"):
        if kind not in info.aux:
            what = ("Landsat QA band (qa): ingest the Landsat scene with its BQA or "
                    "QA_PIXEL file" if kind == "qa" else
                    "Sentinel-2 scene classification (scl): ingest the L2A granule with "
                    "its SCL file")
            raise InputError(f"scene {col}/{item} has no {what}, or use --from indices")
    if kind == "qa":
        return plan(qa_source(f"{skey}/qa", qa_layout, sat.get("sources", []), f"{col}/{item}"))
    if kind == "scl":
        return plan(SclLabel(f"{skey}/scl"))
    if kind == "indices":
        assert limits is not None
        return plan(index_source(f"{skey}/reflectance", info.bands, info.scale, info.offset,
                                 info.fill, limits, f"{col}/{item}"))
    # a finished prediction mask of this scene
    assert model_id is not None
    mitem = mask_item_id(item, model_id)
    try:
        read_item(store, col, mitem)
    except NotFoundError:
        have = sorted(h[:-5] for h in store.list_dirs(f"masks/{col}/{item}")
                      if h.endswith(".zarr"))
        hint = (f"masks of {item}: {', '.join(have)}" if have
                else f"run `satchunk predict {item} --model ...` first")
        raise NotFoundError(f"no finished mask of model {model_id!r} on {col}/{item}: "
                            f"{hint}") from None
    mkey = mask_key(col, item, model_id)
    try:
        mask = read_mask(store, mkey)
    except NotFoundError:
        raise NotFoundError(f"mask {store.url(mkey)} has no class array: predict {item} "
                            f"with that model again") from None
    classes = mask.classes
    if not 0 < len(classes) < LABEL_NODATA:
        raise InputError(f"mask {store.url(mkey)} names no classes (or too many) in its class "
                         "attributes: predict it again")
    if list(mask.shape) != list(grid.shape):
        raise InputError(f"mask {store.url(mkey)} is {list(mask.shape)} px but scene {item} is "
                         f"{list(grid.shape)}: the scene was re-ingested since; predict again")
    mfp = mask.attrs.get("satchunk", {}).get("fingerprint")
    return plan(MaskLabel(f"{mkey}/class", classes, model_id, mkey,
                          hashlib.md5(json.dumps(mfp, sort_keys=True).encode(),
                                      usedforsecurity=False).hexdigest()))


def run_label_shard(task: LabelTask, credentials: Credentials) -> tuple[int, int]:
    """Compute and write the label shard (sy, sx) and its histogram slot."""
    store = task.store.with_credentials(credentials)
    label = task.label.read(store, task.grid.window(*task.shards.window(task.sy, task.sx)))
    write_label_shard(store, task.key, task.sy, task.sx, label)
    return task.sy, task.sx


def _label_source(store: Store, key: str) -> Any:
    return read_scene(store, key, check=False).label_source


def _class_pixels(store: Store, key: str, classes: tuple[str, ...]) -> dict[str, int]:
    import zarr

    hist = zarr.open_array(store.zarr_store(f"{key}/label_histogram", read_only=True),
                           mode="r", zarr_format=3)[:]
    totals = np.asarray(hist, dtype=np.uint64).reshape(-1, len(classes)).sum(axis=0)
    return {name: int(v) for name, v in zip(classes, totals, strict=True)}


def _write_scene_item(store: Store, collection: str, item: str,
                      props: Mapping[str, Any] | None) -> None:
    """Rewrite the scene item without any label properties, then with ``props``."""
    import pystac

    d = read_item(store, collection, item)
    p = d["properties"]
    had = {k: p.pop(k) for k in LABEL_PROPS if k in p}
    if props is None and not had:
        return  # nothing to take away
    p.update(props or {})
    asset = d.get("assets", {}).get("zarr")
    if asset and str(asset.get("title", "")).startswith("scene Zarr ("):
        asset["title"] = "scene Zarr (reflectance, label)" if props else "scene Zarr (reflectance)"
    write_item(store, pystac.Item.from_dict(d))


def label_scene(store: Store, client: Any, item: str, source: str, *,
                collection: str | None = None,
                thresholds: str | Mapping[str, float] | None = None, qa_layout: str = "auto",
                progress: bool = True) -> dict[str, Any]:
    """Write ``label`` and ``label_histogram`` of an ingested scene from ``source``
    (``qa``, ``scl``, ``indices`` or ``mask:MODEL_ID``), one Dask task per shard.

    ``thresholds`` (``indices`` only) overrides :data:`DEFAULT_THRESHOLDS`, as a
    mapping or as ``"ndwi=0.1,ndvi=0.4"``; ``qa_layout`` is ``auto``, ``c2``, ``c1`` or
    ``pre``. Returns a summary: collection, item, source, classes, class_pixels,
    shards, written_shards, status ('labelled' or 'exists'), seconds.
    """
    t0 = time.perf_counter()
    plan = check_label(store, item, source, collection=collection, thresholds=thresholds,
                       qa_layout=qa_layout)
    col, key, grid = plan.collection, plan.key, plan.shards
    source_doc = json.loads(json.dumps(dict(plan.source)))
    props: dict[str, Any] = {"satchunk:label_classes": list(plan.classes),
                             "satchunk:label_source": plan.name}
    if plan.thresholds is not None:
        props["satchunk:label_thresholds"] = dict(plan.thresholds)
    n = grid.n_shards[0] * grid.n_shards[1]
    summary: dict[str, Any] = {"collection": col, "item": item, "source": plan.name,
                               "classes": list(plan.classes), "shards": n}
    if plan.thresholds is not None:
        summary["thresholds"] = dict(plan.thresholds)

    def state() -> tuple[bool, bool]:
        """(the stored label came from this source, the item says so already)"""
        current = read_item(store, col, item)["properties"]
        same = _label_source(store, key) == source_doc
        return same, same and all(current.get(k) == v for k, v in props.items())

    def exists() -> dict[str, Any]:
        return {**summary, "status": "exists", "written_shards": 0,
                "class_pixels": _class_pixels(store, key, plan.classes),
                "seconds": round(time.perf_counter() - t0, 3)}

    def in_label(array: str) -> bool:
        return array in LABEL_ARRAYS

    same, committed = state()
    if committed and find_damage(store, key, in_label) == []:
        return exists()
    with output_lock(store, key, f"scene {store.url(key)}") as lock:
        same, committed = state()  # again: another job may have finished it meanwhile
        redo: set[tuple[int, int]] | None = set()
        if committed:
            redo, why = repairs(store, key, in_label)
            if redo == set():
                return exists()
            log.warning("repairing the label of %s/%s: %s; rewriting %s", col, item, why,
                        "it whole" if redo is None else f"{len(redo)} shard(s)")
            same = redo is not None
        _write_scene_item(store, col, item, None)  # uncommit first: never half-labelled
        drop_from_manifest(store, key, LABEL_ARRAYS)
        if same:
            done = done_label_shards(store, key) - (redo or set())
        else:
            add_label(store, key, plan.classes, source_doc)
            done = set()
        tag = uuid.uuid4().hex[:8]  # fresh keys: a failed run's tasks never shadow a re-run's
        tasks = [LabelTask(plan.label, plan.grid, grid, store.without_credentials(), key, sy,
                           sx)
                 for sy, sx in grid.shards() if (sy, sx) not in done]
        run_shard_tasks(client, run_label_shard, tasks, store.credentials,
                        [f"label-{col}-{item}-{tag}-{t.sy}-{t.sx}" for t in tasks],
                        [f"shard {t.sy},{t.sx} of {col}/{item}" for t in tasks],
                        total=n, done=len(done), desc=f"{item} {plan.name}",
                        progress=progress)
        class_pixels = _class_pixels(store, key, plan.classes)
        lock.confirm(f"the label of scene {store.url(key)}")
        seal(store, key, in_label)
        _write_scene_item(store, col, item, props)  # the commit
    return {**summary, "status": "repaired" if redo else "labelled",
            "written_shards": len(tasks),
            "class_pixels": class_pixels, "seconds": round(time.perf_counter() - t0, 3)}


