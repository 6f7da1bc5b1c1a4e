"""One function per job, shared by the CLI, the demo and the benchmarks.

Each takes its typed options and a :class:`Place` (the store and the Dask cluster),
opens and checks the store once, checks every input before anything is written, runs
under a job record (``runs/<run-id>.json``) and returns the result record. The CLI
only parses, calls one of these and prints.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from chunkstore import InputError, Store, crs_name, find_item, list_collections, list_items
from models import Runtime, check_device, onnx_has_cuda, resolve

from .cluster import cluster_gpus, gpu_task_resources, visible_gpus
from .place import DEFAULT_PLACE, Place

SENSORS = ("auto", "sentinel-2", "landsat", "generic")


def _csv(values: Sequence[str] | None) -> str | None:
    """A list as the CLI spelled it, for the job record."""
    return ",".join(values) if values else None


@dataclass(frozen=True)
class IngestOptions:
    paths: Sequence[str]
    collection: str
    sensor: str = "auto"
    bands: Sequence[str] | None = None
    resolution: float | None = None
    labels: str | None = None
    label_field: str | None = None
    classes: Sequence[str] | None = None
    acquired: Sequence[str] | None = None  # ISO 8601: one for all paths or one per path
    shard: int = 2048
    chunk: int = 256
    stack: bool = False  # the given single-band files are the bands of one scene
    datetime_from: str | None = None  # strptime pattern of the date in the names
    scale: Sequence[float] = ()  # one for all bands or one per band (default: the sensor's)
    offset: Sequence[float] = ()
    nodata_class: int | None = None  # label raster value meaning unlabelled


def ingest_job(opts: IngestOptions, place: Place = DEFAULT_PLACE) -> list[dict[str, Any]]:
    """Raw scenes into sharded Zarr v3 with STAC items; one result per scene."""
    from ingest import check_inputs, ingest_scenes

    if opts.sensor not in SENSORS:
        raise InputError(f"--sensor {opts.sensor!r} is unknown: use auto, sentinel-2, landsat "
                         "or generic")
    st = place.open()
    scenes = check_inputs(list(opts.paths), opts.collection, sensor=opts.sensor,
                          bands=list(opts.bands) if opts.bands else None,
                          resolution=opts.resolution, labels=opts.labels,
                          label_field=opts.label_field,
                          classes=list(opts.classes) if opts.classes else None,
                          acquired=opts.acquired, shard=opts.shard, chunk=opts.chunk,
                          stack=opts.stack, datetime_from=opts.datetime_from,
                          scale=opts.scale, offset=opts.offset, nodata_class=opts.nodata_class)
    st.check()
    config = {"paths": list(opts.paths), "collection": opts.collection, "sensor": opts.sensor,
              "bands": _csv(opts.bands), "resolution": opts.resolution, "labels": opts.labels,
              "shard": opts.shard, "chunk": opts.chunk, "scheduler": place.scheduler,
              "stack": opts.stack, "scale": list(opts.scale), "offset": list(opts.offset)}
    with place.cluster() as client:
        return place.record(st, "ingest", config, lambda record: ingest_scenes(
            scenes, opts.collection, st, client, resolution=opts.resolution, shard=opts.shard,
            chunk=opts.chunk, progress=place.progress), client=client, key="items")


@dataclass(frozen=True)
class LabelOptions:
    items: Sequence[str]
    source: str  # qa | scl | indices | mask:MODEL_ID
    collection: str | None = None
    thresholds: str | None = None
    qa_layout: str = "auto"


def label_job(opts: LabelOptions, place: Place = DEFAULT_PLACE) -> list[dict[str, Any]]:
    """``label`` + ``label_histogram`` written into ingested scenes; one result per item."""
    from ingest import check_label, label_scene

    st = place.checked()
    plans = [check_label(st, i, opts.source, collection=opts.collection,
                         thresholds=opts.thresholds, qa_layout=opts.qa_layout)
             for i in opts.items]  # every item before any write
    config = {"items": list(opts.items), "collection": opts.collection, "from": opts.source,
              "thresholds": opts.thresholds, "qa_layout": opts.qa_layout,
              "scheduler": place.scheduler}
    with place.cluster() as client:

        def work(record: dict[str, Any]) -> list[dict[str, Any]]:
            done = record.setdefault("items", [])  # what finished, also when one fails
            for p in plans:
                done.append(label_scene(st, client, p.item, opts.source,
                                        collection=p.collection, thresholds=opts.thresholds,
                                        qa_layout=opts.qa_layout, progress=place.progress))
            return done

        return place.record(st, "label", config, work, client=client, key="items")


@dataclass(frozen=True)
class PredictOptions:
    items: Sequence[str] = ()  # empty: every scene of ``collection``
    model: str = "ukis-csmask"
    collection: str | None = None
    products: Sequence[str] = ("class",)
    batch: int | None = None  # tiles per model call (None: by device)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: str = "auto"  # auto (bf16 on GPUs, fp32 on CPUs) | fp32 | bf16 | fp16
    compile: bool = False  # torch.compile the model (torch models on GPUs)


def predict_job(opts: PredictOptions, place: Place = DEFAULT_PLACE) -> list[dict[str, Any]]:
    """Masks for scenes, written to ``masks/<collection>/<item>/<model-id>.zarr`` and
    committed as derived STAC items; one result per item."""
    from inference import check_products, check_request, model_ref, predict_items, worker_threads

    names = check_products(opts.products)
    if opts.batch is not None and opts.batch < 1:
        raise InputError(f"--batch {opts.batch} must be at least 1")
    check_device(opts.device)
    runtime, gpus = _local_runtime(opts) if place.local else (None, None)
    st = place.checked()
    listing = None if opts.items else collection_items(st, opts.collection)
    items = list(opts.items) or [i["id"] for i in listing or []
                                 if i["properties"].get("satchunk:kind") != "mask"]
    # a bad model, item, band or scaling fails before any work
    ref, adapter, checked = check_request(st, items, model_ref(opts.model, st),
                                          opts.collection, listing)
    with place.cluster(gpus) as client:
        runtime = runtime or _cluster_runtime(opts, client)
        ref = dataclasses.replace(ref, threads=worker_threads(client), runtime=runtime)
        note = runs_on(adapter, runtime)
        resources = gpu_task_resources(client) if runtime.on_gpu else None
        config = {"items": items, "collection": opts.collection, "model": opts.model,
                  "products": list(names), "batch": opts.batch or "auto",
                  "device": runtime.device, "precision": runtime.precision,
                  "compile": runtime.compile, "runs_on": note, "scheduler": place.scheduler}

        def work(record: dict[str, Any]) -> list[dict[str, Any]]:
            record["model_id"] = adapter.spec.model_id
            done = record.setdefault("items", [])  # what finished, also when one fails
            predict_items(st, client, checked, ref, adapter, products=names,
                          batch=opts.batch, progress=place.progress, resources=resources,
                          done=lambda r: done.append({**r, "runs_on": note}))
            return done

        return place.record(st, "predict", config, work, client=client, key="items")


def _local_runtime(opts: PredictOptions) -> tuple[Runtime, list[str] | None]:
    """The runtime of a job on a cluster of its own, and the GPUs to start it with (one
    worker each; every worker sees its GPU as ``cuda``)."""
    gpus = visible_gpus()
    runtime = resolve(opts.device, opts.precision, opts.compile, gpus=len(gpus))
    if not runtime.on_gpu:
        return runtime, None
    _, _, index = runtime.device.partition(":")
    return dataclasses.replace(runtime, device="cuda"), [gpus[int(index)]] if index else gpus


def _cluster_runtime(opts: PredictOptions, client: Any) -> Runtime:
    """The runtime on a running cluster: GPUs are its workers' ``GPU`` resources."""
    if opts.device.startswith("cuda:"):
        raise InputError(f"--device {opts.device} picks a GPU of this machine; on a cluster "
                         "use --device cuda (each GPU worker runs on its own GPU)")
    n = cluster_gpus(client)
    if opts.device == "cuda" and not n:
        raise InputError("--device cuda: no worker of the cluster has a GPU resource: start "
                         "GPU workers with `dask worker ... --resources GPU=1` (see "
                         "deploy/gpu.md) or use --device cpu")
    return resolve(opts.device, opts.precision, opts.compile, gpus=n)


def runs_on(adapter: Any, runtime: Runtime) -> str:
    """Where the model runs, in words: the device, precision and, for ONNX models, the
    onnxruntime provider (the CPU's when onnxruntime-gpu is missing)."""
    where = f"{runtime.device}, {runtime.precision}" + (", compiled" if runtime.compile else "")
    if adapter.spec.architecture.get("kind") != "onnx":
        return where
    if runtime.on_gpu and not onnx_has_cuda():
        return (f"{runtime.device} for the block function; the ONNX model on the CPU "
                "(onnxruntime has no CUDA provider here: pip install 'satchunk[gpu]')")
    return f"{runtime.device}, fp32 (onnxruntime)"


def collection_items(st: Store, collection: str | None) -> list[dict[str, Any]]:
    """Every item of ``collection`` (scenes and masks); refuses one without scenes."""
    if not collection:
        raise InputError("name scene ITEMs or pass --collection")
    items = list_items(st, collection)
    if not any(i["properties"].get("satchunk:kind") != "mask" for i in items):
        raise InputError(f"collection {collection!r} has no scenes: ingest some first")
    return items


@dataclass(frozen=True)
class ExportOptions:
    item: str
    out: str
    model_id: str
    collection: str | None = None
    format: str = "cog"
    product: str = "class"


def export_job(opts: ExportOptions, place: Place = DEFAULT_PLACE) -> dict[str, Any]:
    """A mask product as a Cloud-Optimized GeoTIFF."""
    from inference import PRODUCT_NAMES, export_cog, find_mask

    if opts.format != "cog":
        raise InputError(f"--format {opts.format!r} is unknown: use cog (or `satchunk "
                         "vectorize` for polygons)")
    if opts.product not in PRODUCT_NAMES:
        raise InputError(f"--product {opts.product!r} is unknown: choose from "
                         f"{', '.join(PRODUCT_NAMES)}")
    st = place.checked()
    ref = find_mask(st, opts.item, opts.model_id, opts.collection)
    config = {"item": opts.item, "model_id": opts.model_id, "format": opts.format,
              "product": opts.product, "out": opts.out}
    return place.record(st, "export", config, lambda record: export_cog(
        st, ref, opts.out, opts.product, progress=place.progress))


@dataclass(frozen=True)
class VectorizeOptions:
    item: str
    out: str  # .parquet, .gpkg or .geojson
    model_id: str
    collection: str | None = None


def vectorize_job(opts: VectorizeOptions, place: Place = DEFAULT_PLACE) -> dict[str, Any]:
    """Polygons per class from a mask, whole across shard borders."""
    from inference import check_vector_path, find_mask, vectorize_mask

    check_vector_path(opts.out)
    st = place.checked()
    ref = find_mask(st, opts.item, opts.model_id, opts.collection)
    config = {"item": opts.item, "model_id": opts.model_id, "out": opts.out,
              "scheduler": place.scheduler}
    with place.cluster() as client:
        return place.record(st, "vectorize", config, lambda record: vectorize_mask(
            st, client, ref, opts.out, progress=place.progress), client=client)


def catalog_rows(place: Place = DEFAULT_PLACE, collection: str | None = None
                 ) -> tuple[Store, list[dict[str, Any]]]:
    """(the store, one row per item: collection, id, datetime, shape, CRS, cloud cover,
    bbox)."""
    st = place.checked()
    rows = []
    for c in [collection] if collection else list_collections(st):
        for it in list_items(st, c):
            p = it["properties"]
            rows.append({"collection": c, "item": it["id"], "datetime": p.get("datetime"),
                         "shape": p.get("proj:shape"), "code": p.get("proj:code"),
                         "crs": crs_name(p),
                         "cloud_cover": p.get("eo:cloud_cover"), "bbox": it.get("bbox")})
    return st, rows


def catalog_item(item: str, place: Place = DEFAULT_PLACE, collection: str | None = None
                 ) -> dict[str, Any]:
    """An item's STAC JSON."""
    return find_item(place.checked(), item, collection)
