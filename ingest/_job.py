"""The ingest job: plan shards, run one Dask task per shard, commit the STAC item.

Each task reads only the source windows of its shard and writes that shard,
so memory stays flat whatever the scene size. Shards already in the store are
skipped, so re-running an interrupted ingest completes it with the same bytes;
the STAC item is written last and is the commit marker.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from chunkstore import (
    LABEL_ARRAYS,
    Credentials,
    InputError,
    SatchunkError,
    SceneSchema,
    ShardGrid,
    Store,
    create_scene,
    delete_item,
    done_shards,
    find_damage,
    footprint_wgs84,
    item_key,
    label_counts,
    output_lock,
    read_scene,
    repairs,
    run_shard_tasks,
    scene_attrs,
    scene_item,
    scene_key,
    seal,
    shard_stats,
    validate_id,
    write_item,
    write_shard,
)

from ._cloud import CLOUD_METHOD, shard_counts
from ._read import read_band
from ._sensors import LANDSAT, SENTINEL2
from ._sources import Reading, SceneSource, discover, fingerprint, stac_common_name
from ._target import TargetGrid, target_grid

log = logging.getLogger("satchunk.ingest")


@dataclass(frozen=True)
class ShardTask:
    """One unit of Dask work: read and write shard (sy, sx) of one scene."""

    scene: SceneSource
    grid: TargetGrid
    schema: SceneSchema
    store: Store  # pickles without credentials; they come as an explicit argument
    key: str
    sy: int
    sx: int


def run_shard(task: ShardTask, credentials: Credentials) -> tuple[int, int]:
    """Read, check and write one shard; returns its (sy, sx)."""
    store = task.store.with_credentials(credentials)
    scene, schema, grid = task.scene, task.schema, task.grid
    r0, c0, h, w = schema.grid.window(task.sy, task.sx)
    block = np.empty((len(scene.bands), h, w), dtype=schema.dtype)
    for i, band in enumerate(scene.bands):
        dn = read_band(band, grid, r0, c0, h, w, scene.dtype, scene.nodata)
        if scene.band_scales:  # reflectance = DN * scale + offset, per band; fill -> NaN
            s, o = scene.band_scales[i]
            fill = _is_fill(dn, scene.nodata)
            np.multiply(dn, s, out=block[i], casting="unsafe")
            block[i] += np.float32(o)
            block[i][fill] = np.nan
        else:
            block[i] = dn
    aux = {name: read_band(src, grid, r0, c0, h, w, src.meta.dtype, 0, kernel="nearest")
           for name, src in scene.aux}
    label = None if scene.label is None else scene.label.read(store, grid.window(r0, c0, h, w))
    names = [b.info.common_name for b in scene.bands]
    _, fill, scale, offset = scene.stored
    stats = shard_counts(block, names, scale, offset, fill,
                         estimate_cloud=scene.sensor in (SENTINEL2, LANDSAT))
    write_shard(store, task.key, schema, task.sy, task.sx, block, aux, label, stats)
    return task.sy, task.sx


def _is_fill(dn: np.ndarray, nodata: float | None) -> np.ndarray:
    if nodata is None or math.isnan(nodata):
        return np.isnan(dn) if dn.dtype.kind == "f" else np.zeros(dn.shape, bool)
    return dn == nodata


def _schema(scene: SceneSource, grid: TargetGrid, shard: int, chunk: int, fp: str,
            collection: str) -> SceneSchema:
    dtype, fill, scale, offset = scene.stored
    return SceneSchema(
        bands=tuple(b.info.common_name for b in scene.bands),
        dtype=dtype, scale=scale, offset=offset, nodata=fill,
        crs_wkt=grid.crs_wkt, transform=grid.transform,
        grid=ShardGrid(grid.height, grid.width, shard, chunk),
        aux=tuple((name, src.meta.dtype) for name, src in scene.aux),
        label_classes=scene.label.classes if scene.label else None,
        label_source=scene.label.source if scene.label else None,
        attrs={"fingerprint": fp, "sensor": scene.sensor, "item": scene.item_id,
               "collection": collection, "sources": [Path(f).name for f in scene.files]},
    )


def _platform(scene: SceneSource) -> dict[str, Any]:
    names = " ".join(str(Path(f).resolve()).upper() for f in scene.files)
    if scene.sensor == SENTINEL2:
        p = {"constellation": "sentinel-2", "instruments": ["msi"]}
        for tag, plat in (("S2A", "sentinel-2a"), ("S2B", "sentinel-2b"), ("S2C", "sentinel-2c")):
            if tag in names:
                p["platform"] = plat
        return p
    if scene.sensor == LANDSAT:
        p = {"constellation": "landsat", "instruments": ["oli", "tirs"]}
        for tag, plat in (("LC08", "landsat-8"), ("LC09", "landsat-9")):
            if tag in names:
                p["platform"] = plat
        return p
    return {}


def ingest_scene(scene: SceneSource, collection: str, store: Store, client: Any, *,
                 resolution: float | None = None, shard: int = 2048, chunk: int = 256,
                 progress: bool = True) -> dict[str, Any]:
    """Ingest one checked scene; returns a summary (status 'ingested' or 'exists')."""
    t0 = time.perf_counter()
    grid = target_grid([b.meta for b in scene.bands], resolution)
    params = {"resolution": resolution, "shard": shard, "chunk": chunk}
    fp = fingerprint(scene, params)
    schema = _schema(scene, grid, shard, chunk, fp, collection)
    key = scene_key(collection, scene.item_id)
    summary = {"collection": collection, "item": scene.item_id, "zarr": store.url(key),
               "shape": [len(schema.bands), grid.height, grid.width],
               "shards": schema.grid.n_shards[0] * schema.grid.n_shards[1]}

    def state() -> tuple[bool, bool]:
        """(the scene Zarr's layout matches these inputs, its item is committed)"""
        attrs = (scene_attrs(store, key) or {}).get("satchunk", {})
        return attrs.get("fingerprint") == fp, store.exists(item_key(collection, scene.item_id))

    # the arrays this ingest writes: a label made later by `satchunk label` is that job's
    owns = None if schema.has_label else (lambda array: array not in LABEL_ARRAYS)
    exists = {**summary, "status": "exists", "written_shards": 0}
    same, committed = state()
    if same and committed and find_damage(store, key, owns) == []:
        return {**exists, "seconds": round(time.perf_counter() - t0, 3)}
    with output_lock(store, key, f"scene {store.url(key)}") as lock:
        same, committed = state()  # again: another job may have finished it meanwhile
        redo: set[tuple[int, int]] | None = set()
        if same and committed:
            redo, why = repairs(store, key, owns)
            if redo == set():
                return {**exists, "seconds": round(time.perf_counter() - t0, 3)}
            log.warning("repairing %s/%s: %s; rewriting %s", collection, scene.item_id, why,
                        "it whole" if redo is None else f"{len(redo)} shard(s)")
            same = redo is not None
        elif committed:
            log.warning("replacing %s/%s: it was ingested from other inputs or parameters%s",
                        collection, scene.item_id, _band_change(store, key, schema.bands))
        if committed and not same:
            delete_item(store, collection, scene.item_id)
        if not same:
            create_scene(store, key, schema)
        done = done_shards(store, key) - (redo or set()) if same else set()
        tasks = [ShardTask(scene, grid, schema, store.without_credentials(), key, sy, sx)
                 for sy, sx in schema.grid.shards() if (sy, sx) not in done]
        try:
            run_shard_tasks(client, run_shard, tasks, store.credentials,
                            [f"ingest-{collection}-{scene.item_id}-{fp[:8]}-{t.sy}-{t.sx}"
                             for t in tasks],
                            [f"shard {t.sy},{t.sx} of {collection}/{scene.item_id}"
                             for t in tasks],
                            total=summary["shards"], done=len(done), desc=scene.item_id,
                            progress=progress)
        except InputError as exc:  # the input's fault: a re-run cannot finish this Zarr
            if not (same and committed):
                store.delete(key)
            raise InputError(f"{exc}; nothing was ingested" if not (same and committed)
                             else str(exc)) from None
        lock.confirm(f"scene {store.url(key)}")
        stats = shard_stats(store, key)
        if not stats["valid_pixels"]:
            store.delete(key)  # nothing to segment: nothing is kept
            raise InputError(f"{scene.files[0]}: every pixel is nodata (fill value "
                             f"{schema.nodata}) or NaN: check the file and its nodata "
                             "value; nothing was ingested")
        if schema.label_classes:
            _warn_empty_classes(schema.label_classes, label_counts(store, key),
                                f"{collection}/{scene.item_id}")
        seal(store, key, owns)
        write_item(store, _scene_item(scene, schema, grid, stats, store.url(key),
                                      collection))  # commit
    return {**summary, "status": "repaired" if redo else "ingested", "written_shards": len(tasks),
            "seconds": round(time.perf_counter() - t0, 3)}


def _band_change(store: Store, key: str, bands: Sequence[str]) -> str:
    """' (bands a,b -> c,d)' when the scene at ``key`` has other bands than ``bands``."""
    try:
        before = read_scene(store, key, check=False).bands
    except SatchunkError:  # damaged: it is replaced whatever it held
        return ""
    if tuple(before) == tuple(bands):
        return ""
    return f" (bands {','.join(before)} -> {','.join(bands)})"


def _warn_empty_classes(classes: Sequence[str], counts: np.ndarray, item: str) -> None:
    empty = [c for c, n in zip(classes, counts, strict=True) if n == 0]
    if empty:
        log.warning("%s: class(es) %s have no labelled pixel on the scene (their shapes are "
                    "smaller than a pixel or between pixel centres); training refuses a class "
                    "without pixels in any scene: add scenes that hold them or drop them from "
                    "the labels", item, ", ".join(empty))


def _scene_item(scene: SceneSource, schema: SceneSchema, grid: TargetGrid,
                stats: dict[str, Any], href: str, collection: str) -> Any:
    """The scene's STAC item, with ``stats`` gathered from its written shards."""
    total = grid.height * grid.width
    props: dict[str, Any] = {
        **_platform(scene),
        "satchunk:sensor": scene.sensor,
        "satchunk:shard": schema.grid.shard, "satchunk:chunk": schema.grid.chunk,
        "satchunk:valid_fraction": round(stats["valid_pixels"] / total, 6),
    }
    acquired = scene.acquired
    if acquired is None:
        acquired = datetime.fromtimestamp(Path(scene.files[0]).stat().st_mtime, UTC)
        props["satchunk:datetime_source"] = "file modification time (pass --datetime)"
        log.warning("%s: no acquisition time in the file names or tags; using the file's "
                    "modification time (pass --datetime, one per path, or --datetime-from "
                    "%%Y%%m%%d naming the date's pattern in the file names)", scene.item_id)
    if scene.sensor in (SENTINEL2, LANDSAT) and "blue" in schema.bands:
        props["eo:cloud_cover"] = round(100 * stats["cloud_pixels"]
                                        / max(stats["valid_pixels"], 1), 2)
        props["satchunk:cloud_cover_method"] = CLOUD_METHOD
    if scene.label is not None:
        props["satchunk:label_classes"] = list(scene.label.classes)
    band_meta = [{"name": b.info.name,
                  "common_name": stac_common_name(b.info.common_name),
                  "center_wavelength": b.info.center_wavelength} for b in scene.bands]
    item = scene_item(schema, scene.item_id, collection, href, acquired, band_meta, props)
    for rb in item.assets["zarr"].extra_fields.get("raster:bands", []):
        if isinstance(rb.get("nodata"), float) and math.isnan(rb["nodata"]):
            rb["nodata"] = "nan"  # the STAC raster extension's spelling; NaN is not JSON
    return item


def check_inputs(paths: Sequence[str], collection: str, *, sensor: str = "auto",
                 bands: Sequence[str] | None = None, resolution: float | None = None,
                 labels: str | None = None, label_field: str | None = None,
                 classes: Sequence[str] | None = None,
                 acquired: str | Sequence[str] | None = None, shard: int = 2048,
                 chunk: int = 256, stack: bool = False, datetime_from: str | None = None,
                 scale: Sequence[float] = (), offset: Sequence[float] = (),
                 nodata_class: int | None = None) -> list[SceneSource]:
    """Check every input and parameter before any cluster starts or anything is written.

    ``acquired`` is one ISO 8601 time for every path or one per path; ``scale`` and
    ``offset`` one value for every band or one per band."""
    validate_id(collection, "collection")
    ShardGrid(1, 1, shard, chunk)  # validates --shard / --chunk
    times = (acquired,) if isinstance(acquired, str) else tuple(acquired or ())
    reading = Reading(sensor, tuple(bands) if bands else None, stack, times, datetime_from,
                      _numbers("--scale", scale), _numbers("--offset", offset))
    scenes = discover(paths, reading, labels, label_field, classes, nodata_class)
    for scene in scenes:
        grid = target_grid([b.meta for b in scene.bands], resolution)
        try:  # the STAC footprint: lon/lat, cut at the antimeridian where it crosses
            footprint_wgs84(grid.crs_wkt, grid.transform, (grid.height, grid.width))
        except InputError as exc:
            raise InputError(f"{scene.files[0]}: {exc}") from None
    return scenes


def _numbers(flag: str, values: Sequence[float]) -> tuple[float, ...]:
    out = tuple(float(v) for v in values)
    if not all(math.isfinite(v) for v in out) or (flag == "--scale" and 0 in out):
        raise InputError(f"{flag} {','.join(map(str, values))}: give finite numbers"
                         + (", none of them 0" if flag == "--scale" else ""))
    return out


def ingest_scenes(scenes: Sequence[SceneSource], collection: str, store: Store, client: Any,
                  *, resolution: float | None = None, shard: int = 2048, chunk: int = 256,
                  progress: bool = True) -> list[dict[str, Any]]:
    store.check()
    return [ingest_scene(s, collection, store, client, resolution=resolution, shard=shard,
                         chunk=chunk, progress=progress) for s in scenes]


def ingest(paths: Sequence[str], collection: str, store: Store, client: Any, *,
           sensor: str = "auto", bands: Sequence[str] | None = None,
           resolution: float | None = None, labels: str | None = None,
           label_field: str | None = None, classes: Sequence[str] | None = None,
           acquired: str | Sequence[str] | None = None, shard: int = 2048, chunk: int = 256,
           stack: bool = False, datetime_from: str | None = None, scale: Sequence[float] = (),
           offset: Sequence[float] = (), nodata_class: int | None = None,
           progress: bool = True) -> list[dict[str, Any]]:
    """Check every input first (see :func:`check_inputs`), then ingest each scene into
    ``collection``."""
    scenes = check_inputs(paths, collection, sensor=sensor, bands=bands, resolution=resolution,
                          labels=labels, label_field=label_field, classes=classes,
                          acquired=acquired, shard=shard, chunk=chunk, stack=stack,
                          datetime_from=datetime_from, scale=scale, offset=offset,
                          nodata_class=nodata_class)
    return ingest_scenes(scenes, collection, store, client, resolution=resolution, shard=shard,
                         chunk=chunk, progress=progress)
