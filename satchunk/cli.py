"""The satchunk command line. ``main(argv)`` returns the exit status (tests call it)."""

from __future__ import annotations

import dataclasses
import errno
import json
import sys
import tempfile
from typing import Annotated, Any

import click
import typer

from chunkstore import (
    InputError,
    SatchunkError,
    find_item,
    list_collections,
    list_items,
    open_store,
)

from .jobs import run_job, update_run
from .logs import configure_logging
from .signals import wait_for_signal

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Satellite image segmentation over sharded Zarr on S3, run by Dask.")
catalog_app = typer.Typer(no_args_is_help=True, help="Browse the STAC catalog in the store.")
store_app = typer.Typer(no_args_is_help=True, help="The embedded S3 server.")
app.add_typer(catalog_app, name="catalog")
app.add_typer(store_app, name="store")

StoreOpt = Annotated[str | None, typer.Option("--store", help="s3://BUCKET/PREFIX or a "
                                              "directory [env: SATCHUNK_STORE]")]
EndpointOpt = Annotated[str | None, typer.Option("--endpoint-url", help="S3 endpoint "
                                                 "[env: AWS_ENDPOINT_URL]")]
SchedulerOpt = Annotated[str | None, typer.Option("--scheduler", help="tcp://HOST:8786 of a "
                                                  "running Dask scheduler (default: a local "
                                                  "cluster on 127.0.0.1)")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print machine-readable JSON")]


def _csv(value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


@app.command()
def ingest(
    paths: Annotated[list[str], typer.Argument(help="scene files or folders")],
    collection: Annotated[str, typer.Option("--collection", help="collection id")],
    store: StoreOpt = None,
    endpoint_url: EndpointOpt = None,
    sensor: Annotated[str, typer.Option(help="auto | sentinel-2 | landsat | generic")] = "auto",
    bands: Annotated[str | None, typer.Option(help="comma-separated band names (ids or "
                                              "common names)")] = None,
    resolution: Annotated[float | None, typer.Option(help="target pixel size in CRS units "
                                                     "(default: the finest band's)")] = None,
    labels: Annotated[str | None, typer.Option(help="label raster, polygon file, or folder "
                                               "of masks paired by file stem")] = None,
    label_field: Annotated[str | None, typer.Option(help="class field of polygon labels")] = None,
    classes: Annotated[str | None, typer.Option(help="comma-separated class names of a "
                                                "raster label, in value order")] = None,
    acquired: Annotated[str | None, typer.Option("--datetime", help="acquisition time (ISO "
                                                 "8601) when file names carry none")] = None,
    shard: Annotated[int, typer.Option(help="shard edge in pixels (one object, one task)")] = 2048,
    chunk: Annotated[int, typer.Option(help="inner chunk edge in pixels (training patch)")] = 256,
    scheduler: SchedulerOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Ingest raw scenes into sharded Zarr v3 with STAC items."""
    from ingest import check_inputs, ingest_scenes

    from .cluster import dask_client

    if sensor not in ("auto", "sentinel-2", "landsat", "generic"):
        raise InputError(f"--sensor {sensor!r} is unknown: use auto, sentinel-2, landsat or "
                         "generic")
    st = open_store(store, endpoint_url)
    scenes = check_inputs(paths, collection, sensor=sensor, bands=_csv(bands),
                          resolution=resolution, labels=labels, label_field=label_field,
                          classes=_csv(classes), acquired=acquired, shard=shard, chunk=chunk)
    st.check()
    config = {"paths": paths, "collection": collection, "sensor": sensor, "bands": bands,
              "resolution": resolution, "labels": labels, "shard": shard, "chunk": chunk,
              "scheduler": scheduler}
    with dask_client(scheduler, quiet=as_json) as client:
        results = run_job(st, "ingest", config, lambda record: ingest_scenes(
            scenes, collection, st, client, resolution=resolution, shard=shard, chunk=chunk,
            progress=not as_json), client=client, key="items")
    if as_json:
        typer.echo(json.dumps(results, indent=2))
        return
    for r in results:
        what = "already ingested" if r["status"] == "exists" else (
            f"{r['written_shards']} shard(s) written")
        typer.echo(f"{r['collection']}/{r['item']}: {r['shape'][0]} bands x {r['shape'][1]} x "
                   f"{r['shape'][2]} px, {r['shards']} shard(s), {what} in {r['seconds']} s")


@app.command()
def label(
    items: Annotated[list[str], typer.Argument(help="scene item ids")],
    source: Annotated[str, typer.Option("--from", help="qa (Landsat QA bits) | scl "
                                        "(Sentinel-2 L2A scene classification) | indices "
                                        "(NDWI/NDVI/NDBI/BSI rules) | mask:MODEL_ID (a "
                                        "finished prediction)")],
    collection: Annotated[str | None, typer.Option("--collection", help="collection of the "
                                                   "ITEMs (default: searched)")] = None,
    thresholds: Annotated[str | None, typer.Option(help="--from indices: overrides, e.g. "
                                                   "ndwi=0.1,ndvi=0.3,ndbi=0.1,bsi=0.0")] = None,
    qa_layout: Annotated[str, typer.Option("--qa-layout", help="--from qa: auto | c2 | c1 | "
                                           "pre (auto reads the source file names)")] = "auto",
    store: StoreOpt = None,
    endpoint_url: EndpointOpt = None,
    scheduler: SchedulerOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Write label + label_histogram into ingested scenes from QA bits, SCL, spectral
    indices or a prediction mask."""
    from ingest import check_label, label_scene

    from .cluster import dask_client

    st = open_store(store, endpoint_url)
    st.check()
    plans = [check_label(st, i, source, collection=collection, thresholds=thresholds,
                         qa_layout=qa_layout) for i in items]  # every item before any write
    config = {"items": items, "collection": collection, "from": source,
              "thresholds": thresholds, "qa_layout": qa_layout, "scheduler": scheduler}
    with dask_client(scheduler, quiet=as_json) as client:

        def work(record: dict[str, Any]) -> list[dict[str, Any]]:
            done = record.setdefault("items", [])  # what finished, also when one fails
            for p in plans:
                done.append(label_scene(st, client, p.item, source, collection=p.collection,
                                        thresholds=thresholds, qa_layout=qa_layout,
                                        progress=not as_json))
            return done

        results = run_job(st, "label", config, work, client=client, key="items")
    if as_json:
        typer.echo(json.dumps(results, indent=2))
        return
    for r in results:
        total = sum(r["class_pixels"].values()) or 1
        shares = ", ".join(f"{k} {100 * v / total:.1f}%" for k, v in r["class_pixels"].items())
        what = "already labelled" if r["status"] == "exists" else (
            f"{r['written_shards']} shard(s) written")
        typer.echo(f"{r['collection']}/{r['item']}: label from {r['source']} ({shares}); "
                   f"{what} in {r['seconds']} s")


@app.command()
def predict(
    items: Annotated[list[str] | None, typer.Argument(help="scene item ids")] = None,
    model: Annotated[str, typer.Option("--model", help="unet | segformer | onnx:PATH | "
                                       "ukis-csmask[:4b|6b][:l1c|l2a] | checkpoint folder or "
                                       "s3://.../models/NAME/VERSION")] = "ukis-csmask",
    collection: Annotated[str | None, typer.Option("--collection", help="every scene of this "
                                                   "collection (or where ITEMs are)")] = None,
    products: Annotated[str, typer.Option(help="comma-separated: class,probability,entropy,"
                                          "margin (class is always written)")] = "class",
    batch: Annotated[int | None, typer.Option(help="tiles per model call [default: 1 on a "
                                              "CPU, 16 on a GPU]")] = None,
    store: StoreOpt = None,
    endpoint_url: EndpointOpt = None,
    scheduler: SchedulerOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Segment scenes with a model; masks go to masks/<collection>/<item>/<model-id>.zarr."""
    from inference import (
        check_item,
        check_products,
        load_checked,
        model_ref,
        predict_item,
        worker_threads,
    )

    from .cluster import dask_client

    names = check_products(_csv(products))
    if batch is not None and batch < 1:
        raise InputError(f"--batch {batch} must be at least 1")
    st = open_store(store, endpoint_url)
    st.check()
    if not items:
        if not collection:
            raise InputError("name scene ITEMs or pass --collection")
        items = [i["id"] for i in list_items(st, collection)
                 if i["properties"].get("satchunk:kind") != "mask"]
        if not items:
            raise InputError(f"collection {collection!r} has no scenes: ingest some first")
    ref = model_ref(model, st)
    adapter = load_checked(ref, st)  # a bad model, item or band fails before any work
    scenes = [check_item(st, i, adapter, collection)[0] for i in items]
    config = {"items": items, "collection": collection, "model": model,
              "products": list(names), "batch": batch or "auto", "scheduler": scheduler}
    with dask_client(scheduler, quiet=as_json) as client:
        ref = dataclasses.replace(ref, threads=worker_threads(client))

        def work(record: dict[str, Any]) -> list[dict[str, Any]]:
            record["model_id"] = adapter.spec.model_id
            done = record.setdefault("items", [])  # what finished, also when one fails
            for scene in scenes:
                done.append(predict_item(st, client, scene["id"], ref, adapter,
                                         collection=scene["collection"], products=names,
                                         batch=batch, progress=not as_json))
            return done

        results = run_job(st, "predict", config, work, client=client, key="items")
    if as_json:
        typer.echo(json.dumps([{k: r[k] for k in ("collection", "item", "model_id", "mask",
                                                   "seconds", "status", "written_shards")}
                               for r in results], indent=2))
        return
    for r in results:
        what = "already predicted" if r["status"] == "exists" else (
            f"{r['written_shards']} shard(s) written")
        typer.echo(f"{r['collection']}/{r['item']} -> {r['mask']} ({what} in {r['seconds']} s)")


@app.command("export-onnx")
def export_onnx_cmd(
    model: Annotated[str, typer.Argument(help="unet | segformer | checkpoint folder")],
    out: Annotated[str, typer.Argument(help="output .onnx path (a .json sidecar is written "
                                       "next to it)")],
) -> None:
    """Export a torch model to ONNX with a dynamic batch axis, checked against torch."""
    from models import ModelError, export_onnx, load_model

    if not out.lower().endswith(".onnx"):
        raise InputError(f"{out}: name the output MODEL.onnx (a MODEL.json sidecar goes next "
                         "to it)")
    try:
        res = export_onnx(load_model(model), out)
    except ModelError as exc:
        raise InputError(str(exc)) from None
    typer.echo(f"wrote {res['onnx']} and {res['sidecar']} (max |p_onnx - p_torch| = "
               f"{res['max_abs_diff']:.1e} on a batch of {res['batch_checked']})")


ModelIdOpt = Annotated[str, typer.Option("--model-id", help="the mask's model id (see "
                                          "`satchunk catalog ls`: ITEM__MODEL-ID)")]


@app.command("export")
def export_cmd(
    item: Annotated[str, typer.Argument(help="scene item id")],
    out: Annotated[str, typer.Argument(help="output .tif")],
    model_id: ModelIdOpt,
    collection: Annotated[str | None, typer.Option("--collection")] = None,
    fmt: Annotated[str, typer.Option("--format", help="output format")] = "cog",
    product: Annotated[str, typer.Option(help="class | probability | entropy | "
                                         "margin")] = "class",
    store: StoreOpt = None,
    endpoint_url: EndpointOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Export a mask product as a Cloud-Optimized GeoTIFF (tiled, with overviews)."""
    from inference import PRODUCT_NAMES, export_cog, find_mask

    if fmt != "cog":
        raise InputError(f"--format {fmt!r} is unknown: use cog (or `satchunk vectorize` for "
                         "polygons)")
    if product not in PRODUCT_NAMES:
        raise InputError(f"--product {product!r} is unknown: choose from "
                         f"{', '.join(PRODUCT_NAMES)}")
    st = open_store(store, endpoint_url)
    st.check()
    ref = find_mask(st, item, model_id, collection)
    res = run_job(st, "export", {"item": item, "model_id": model_id, "format": fmt,
                                  "product": product, "out": out},
                   lambda record: export_cog(st, ref, out, product, progress=not as_json))
    if as_json:
        typer.echo(json.dumps(res, indent=2))
        return
    typer.echo(f"{res['out']}: {product} of {ref.collection}/{item} by {model_id}, "
               f"{res['shape'][2]} x {res['shape'][1]} px, overviews {res['overviews']}, "
               f"{res['bytes'] / 1e6:.1f} MB in {res['seconds']} s")


@app.command()
def vectorize(
    item: Annotated[str, typer.Argument(help="scene item id")],
    out: Annotated[str, typer.Argument(help="output .parquet, .gpkg or .geojson (WGS84)")],
    model_id: ModelIdOpt,
    collection: Annotated[str | None, typer.Option("--collection")] = None,
    store: StoreOpt = None,
    endpoint_url: EndpointOpt = None,
    scheduler: SchedulerOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Polygons per class (area, mean probability) from a mask, whole across shard borders."""
    from inference import check_vector_path, find_mask, vectorize_mask

    from .cluster import dask_client

    check_vector_path(out)
    st = open_store(store, endpoint_url)
    st.check()
    ref = find_mask(st, item, model_id, collection)
    with dask_client(scheduler, quiet=as_json) as client:
        res = run_job(st, "vectorize", {"item": item, "model_id": model_id, "out": out,
                                         "scheduler": scheduler},
                       lambda record: vectorize_mask(st, client, ref, out,
                                                     progress=not as_json), client=client)
    if as_json:
        typer.echo(json.dumps(res, indent=2))
        return
    per = ", ".join(f"{k} {v}" for k, v in res["per_class"].items()) or "none"
    typer.echo(f"{res['out']}: {res['polygons']} polygon(s) ({per}) in {res['seconds']} s")
    if not res["mean_probability"]:
        typer.echo("note: mean_probability is empty: predict with --products "
                   "class,probability to fill it", err=True)


@app.command()
def train(
    ctx: typer.Context,
    collection: Annotated[list[str] | None, typer.Option(
        "--collection", help="labelled collection (repeat for several)")] = None,
    config_file: Annotated[str | None, typer.Option(
        "--config", help="YAML or JSON file of these options (keys as the option names, "
        "e.g. epochs: 40); options on the command line win")] = None,
    model: Annotated[str, typer.Option("--model", help="unet[:plain|resnet18|resnet34|"
                                       "resnet50] | segformer")] = "unet",
    out: Annotated[str | None, typer.Option("--out", help="where checkpoints go: s3://... or "
                                            "a directory (default: STORE/models/NAME/VERSION)"
                                            )] = None,
    epochs: Annotated[int, typer.Option(help="most epochs (early stopping may end sooner)")] = 20,
    steps: Annotated[int, typer.Option(help="optimizer steps per epoch")] = 50,
    batch: Annotated[int, typer.Option(help="patches per step")] = 8,
    lr: Annotated[float, typer.Option(help="peak learning rate (AdamW, warmup + cosine)")
                  ] = 1e-3,
    patch: Annotated[int | None, typer.Option(help="patch edge in pixels, at most the inner "
                                              "chunk (default: the chunk)")] = None,
    sampler: Annotated[str, typer.Option(help="balanced | uniform")] = "balanced",
    exponent: Annotated[float, typer.Option(help="balanced sampler: 0 = uniform ... 1 = "
                                            "classes seen equally")] = 1.0,
    loss: Annotated[str, typer.Option(help="ce | focal-dice")] = "ce",
    class_weights: Annotated[str, typer.Option("--class-weights", help="auto (median "
                                               "frequency) | none")] = "none",
    seed: Annotated[int, typer.Option(help="seeds the split, sampling and weights")] = 0,
    patience: Annotated[int, typer.Option(help="epochs without a better val mIoU before "
                                          "stopping")] = 5,
    workers: Annotated[int, typer.Option(help="DataLoader worker processes")] = 2,
    bands: Annotated[str | None, typer.Option(help="comma-separated input bands (default: "
                                              "every band the scenes share)")] = None,
    indices: Annotated[str | None, typer.Option(help="derived input channels: ndvi,ndwi,"
                                                "ndbi,bsi")] = None,
    name: Annotated[str | None, typer.Option(help="model name (default: MODEL-COLLECTION)")
                    ] = None,
    version: Annotated[str, typer.Option(help="model version")] = "1",
    device: Annotated[str, typer.Option(help="auto | cpu | cuda (mixed precision on cuda)")
                      ] = "auto",
    val_patches: Annotated[int, typer.Option("--val-patches", help="most validation chunks "
                                             "per epoch")] = 512,
    resume: Annotated[bool, typer.Option("--resume", help="continue from OUT/last")] = False,
    logdir: Annotated[str | None, typer.Option(help="TensorBoard log folder (default: "
                                               "runs/RUN-ID; also copied to OUT/logs)")] = None,
    store: StoreOpt = None,
    endpoint_url: EndpointOpt = None,
    scheduler: Annotated[str | None, typer.Option("--scheduler", help="tcp://HOST:8786: run "
                                                  "the training loop as one task on a worker "
                                                  "of that cluster (e.g. the GPU node)")
                         ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Train a segmentation model on patches streamed from the store."""
    from pathlib import Path

    from chunkstore import model_key
    from training import TrainConfig, prepare, saved_split
    from training import train as run_training

    if config_file:
        from .options_file import read_options

        given = {k: v for k, v in read_options(config_file, TRAIN_OPTIONS).items()
                 if _not_on_command_line(ctx, k)}
        for k in {"bands", "indices"} & given.keys():  # comma-separated, as on the CLI
            given[k] = ",".join(given[k] or []) or None
        values = {**locals(), **given}
        (collection, model, out, epochs, steps, batch, lr, patch, sampler, exponent, loss,
         class_weights, seed, patience, workers, bands, indices, name, version, device,
         val_patches) = (values[k] for k in TRAIN_OPTIONS)
    if not collection:
        raise InputError("name the labelled collection(s): --collection C (or collection: "
                         "in --config)")
    cfg = TrainConfig(collections=list(collection), model=model, epochs=epochs, steps=steps,
                      batch=batch, lr=lr, patch=patch, sampler=sampler, exponent=exponent,
                      loss=loss, class_weights=class_weights, seed=seed, patience=patience,
                      workers=workers, bands=_csv(bands), indices=_csv(indices) or [],
                      name=name, version=version, device=device,
                      val_patches=val_patches)
    st = open_store(store, endpoint_url)
    st.check()
    dest = (open_store(out, st.endpoint_url).with_credentials(st.credentials) if out
            else st.child(model_key(cfg.model_name(), cfg.version)))
    # every input checked before anything is written; a resumed run keeps its split
    prepared = prepare(st, cfg, saved_split(dest) if resume else None)
    dest.check()  # reachable and usable before an epoch is spent
    config = dataclasses.asdict(cfg) | {"out": dest.uri, "resume": resume}

    def work(record: dict[str, Any]) -> dict[str, Any]:
        tb = Path(logdir) if logdir else Path("runs") / record["run_id"]
        if not as_json:
            logs = (f"tensorboard --logdir {tb}" if scheduler is None
                    else f"the event file goes to {dest.uri}/logs")
            typer.echo(f"checkpoints -> {dest.uri}; TensorBoard: {logs}")

        def on_epoch(row: dict[str, Any]) -> None:
            record.setdefault("history", []).append(row)  # the dashboard's live curves
            update_run(st, record)
            if not as_json:
                _echo_epoch(row)

        if scheduler is None:
            return run_training(st, dest, cfg, resume=resume, logdir=tb,
                                progress=not as_json, on_epoch=on_epoch, prepared=prepared)
        from .remote import run_remote, train_task

        return run_remote(scheduler, st, record, train_task, st.without_credentials(),
                          dest.without_credentials(), st.credentials, cfg, resume, prepared,
                          logdir, quiet=as_json, on_event=on_epoch)

    config["scheduler"] = scheduler
    result = run_job(st, "train", config, work)
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    typer.echo(f"best val mIoU {result['best_val_miou']:.4f} at epoch {result['best_epoch']}"
               f" of {result['epochs_run']}{' (early stop)' if result['early_stopped'] else ''}"
               f"; model: {result['out']} (satchunk predict --model {result['out']})")


# train's options a --config file may set, in TRAIN_OPTIONS order, with their types
TRAIN_OPTIONS = {
    "collection": list, "model": str, "out": str, "epochs": int, "steps": int, "batch": int,
    "lr": float, "patch": int, "sampler": str, "exponent": float, "loss": str,
    "class_weights": str, "seed": int, "patience": int, "workers": int, "bands": list,
    "indices": list, "name": str, "version": str, "device": str, "val_patches": int,
}


def _not_on_command_line(ctx: Any, name: str) -> bool:
    source = ctx.get_parameter_source(name)
    return getattr(source, "name", "DEFAULT") not in ("COMMANDLINE", "ENVIRONMENT")


def _echo_epoch(row: dict[str, Any]) -> None:
    typer.echo(f"epoch {row['epoch']}: loss {_num(row['train_loss'])}, val mIoU "
               f"{_num(row['val_miou'])}, {row['patches_per_second']} patches/s")


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


@app.command()
def evaluate(
    model: Annotated[str, typer.Option("--model", help="checkpoint written by `satchunk "
                                       "train`: s3://.../models/NAME/VERSION or a directory")],
    collection: Annotated[list[str] | None, typer.Option("--collection", help="limit to "
                                                         "these collections")] = None,
    split: Annotated[str, typer.Option(help="train | val | test")] = "test",
    batch: Annotated[int, typer.Option(help="patches per model call")] = 8,
    workers: Annotated[int, typer.Option(help="DataLoader worker processes")] = 2,
    store: StoreOpt = None,
    endpoint_url: EndpointOpt = None,
    scheduler: Annotated[str | None, typer.Option("--scheduler", help="tcp://HOST:8786: "
                                                  "evaluate as one task on a worker of that "
                                                  "cluster")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Per-class IoU, Dice, precision, recall, accuracy and the confusion matrix over every
    labelled pixel of a split."""
    from training import evaluate_checkpoint

    st = open_store(store, endpoint_url)
    st.check()
    ckpt = (open_store(model.rstrip("/"), st.endpoint_url).with_credentials(st.credentials)
            if "://" in model else open_store(model))
    config = {"model": ckpt.uri, "collections": collection, "split": split,
              "scheduler": scheduler}

    def work(record: dict[str, Any]) -> dict[str, Any]:
        if scheduler is None:
            return evaluate_checkpoint(st, ckpt, collection, split, batch=batch,
                                       workers=workers, progress=not as_json)
        from .remote import evaluate_task, run_remote

        return run_remote(scheduler, st, record, evaluate_task, st.without_credentials(),
                          ckpt.without_credentials(), st.credentials, collection, split,
                          batch, workers, quiet=as_json)

    result = run_job(st, "evaluate", config, work)
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    typer.echo(f"{result['model_id']} on {result['split']} ({result['shards']} shard(s), "
               f"{result['pixels']} px): mIoU {_num(result['miou'])}, overall accuracy "
               f"{_num(result['overall_accuracy'])}")
    for cname, m in result["per_class"].items():
        cells = "  ".join(f"{k} {m[k]:.3f}" if m[k] is not None else f"{k} -"
                          for k in ("iou", "dice", "precision", "recall"))
        typer.echo(f"  {cname:<16} {cells}  support {m['support']}")
    typer.echo("written: " + ", ".join(result["files"]))


@catalog_app.command("ls")
def catalog_ls(
    collection: Annotated[str | None, typer.Option("--collection")] = None,
    store: StoreOpt = None,
    endpoint_url: EndpointOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List collections and their items."""
    st = open_store(store, endpoint_url)
    st.check()
    cols = [collection] if collection else list_collections(st)
    rows = []
    for c in cols:
        for it in list_items(st, c):
            p = it["properties"]
            rows.append({"collection": c, "item": it["id"], "datetime": p.get("datetime"),
                         "shape": p.get("proj:shape"), "code": p.get("proj:code"),
                         "cloud_cover": p.get("eo:cloud_cover"), "bbox": it.get("bbox")})
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        typer.echo(f"no items in {st.describe()}" + (f" collection {collection}" if collection
                                                      else ""))
        return
    typer.echo(f"{'collection':<20} {'item':<32} {'datetime':<26} {'shape':<12} {'crs':<11} "
               "cloud%")
    for r in rows:
        shape = "x".join(str(v) for v in r["shape"] or [])
        cc = "" if r["cloud_cover"] is None else f"{r['cloud_cover']:.1f}"
        typer.echo(f"{r['collection']:<20} {r['item']:<32} {str(r['datetime']):<26} "
                   f"{shape:<12} {str(r['code']):<11} {cc}")


@catalog_app.command("show")
def catalog_show(
    item: Annotated[str, typer.Argument(help="item id")],
    collection: Annotated[str | None, typer.Option("--collection")] = None,
    store: StoreOpt = None,
    endpoint_url: EndpointOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Print an item's STAC JSON."""
    st = open_store(store, endpoint_url)
    st.check()
    d = find_item(st, item, collection)
    typer.echo(json.dumps(d, indent=2 if not as_json else None))


@store_app.command("serve")
def store_serve(
    directory: Annotated[str, typer.Option("--dir", help="data directory")] = ".satchunk-s3",
    host: Annotated[str, typer.Option(help="address to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="S3 port (0 = a free one)")] = 9000,
    bucket: Annotated[str, typer.Option(help="bucket to create")] = "satchunk",
) -> None:
    """Serve an S3-compatible store (SeaweedFS) until Ctrl-C."""
    from chunkstore import start_s3_server

    server = start_s3_server(directory, host=host, port=port or None, bucket=bucket)

    def check() -> None:
        if server.process is not None and server.process.poll() is not None:
            raise SatchunkError(f"the S3 server exited: see {server.data_dir}/weed.log")

    try:
        for k, v in server.env().items():
            if k != "AWS_REGION":
                typer.echo(f"export {k}={v}")
        typer.echo(f"# serving {server.endpoint_url} from {server.data_dir} (pid "
                   f"{server.pid}); Ctrl-C stops it (its graceful stop takes up to 15 s)", err=True)
        sys.stdout.flush()
        wait_for_signal(check)
    finally:
        server.stop()


@app.command()
def dashboard(
    store: StoreOpt = None,
    endpoint_url: EndpointOpt = None,
    host: Annotated[str, typer.Option(help="address to bind (127.0.0.1 keeps it on this "
                                      "machine; see the README before exposing it)")
                    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port (0 = any free one)")] = 8050,
) -> None:
    """Serve the web dashboard (catalog, items with masks, dataset charts, runs) until
    Ctrl-C."""
    from dashboards import start_dashboard

    st = open_store(store, endpoint_url)
    st.check()
    served = start_dashboard(st, host, port)
    typer.echo(f"satchunk dashboard: {served.url} (store {st.describe()}); Ctrl-C stops it")
    sys.stdout.flush()
    wait_for_signal()
    served.stop()


@app.command()
def demo(
    data: Annotated[str, typer.Option("--dir", help="where the demo keeps its store")]
    = ".satchunk-demo",
    keep_serving: Annotated[bool, typer.Option(help="keep the S3 server, the Dask cluster "
                                               "and the dashboard up until Ctrl-C")] = False,
    port: Annotated[int, typer.Option(help="satchunk dashboard port (taken: any free one)")
                    ] = 8050,
) -> None:
    """Run the end-to-end demo on the bundled real scenes: ingest, cloud masks, weak labels,
    a short UNet training, prediction, and both dashboards."""
    from .demo import run_demo

    run_demo(data, keep_serving=keep_serving, port=port)


# typer >= 0.20 runs on a click copy of its own (typer._click), whose exceptions are
# not the installed click's: catch both, so a mistyped option is one line, exit 2.
_CLICK_ERRORS = tuple({click.ClickException,
                       *(c for c in typer.BadParameter.__mro__
                         if c.__name__ == "ClickException")})
_CLICK_ABORT = tuple({click.exceptions.Abort, typer.Abort})


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns 0 on success, 2 on a user error (one line on stderr)."""
    try:
        configure_logging()
        # typer turns Ctrl-C (KeyboardInterrupt) into a returned 130
        if app(args=argv, prog_name="satchunk", standalone_mode=False) == 130:
            raise KeyboardInterrupt
    except SatchunkError as exc:
        typer.echo(f"error: {exc}", err=True)
        return exc.exit_code
    except _CLICK_ABORT:
        typer.echo("interrupted", err=True)
        return 130
    except _CLICK_ERRORS as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":
            exc.show()  # a bare command: its help
            return 2
        ctx = getattr(exc, "ctx", None)
        where = ctx.command_path if ctx is not None else "satchunk"
        typer.echo(f"error: {exc.format_message()} (see `{where} --help`)", err=True)
        return exc.exit_code or 2
    except KeyboardInterrupt:
        typer.echo("interrupted: re-run the same command to finish the missing shards",
                   err=True)
        return 130
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
        where = f" writing {exc.filename}" if exc.filename else ""
        typer.echo(f"error: no space left on the device{where}: free space there, or point "
                   f"TMPDIR (now {tempfile.gettempdir()}) at a disk with room; nothing was "
                   "committed", err=True)
        return 1
    return 0


def run() -> None:
    sys.exit(main())
