"""The satchunk command line: parse, call one job function, print. ``main(argv)`` returns
the exit status (tests call it)."""

from __future__ import annotations

import errno
import json
import sys
import tempfile
from collections.abc import Callable, Iterable
from typing import Annotated, Any

import click
import typer

from chunkstore import SatchunkError

from . import report
from .logs import configure_logging
from .place import Place

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
SchedulerOpt = Annotated[str | None, typer.Option("--scheduler", help=(
    "tcp://HOST:8786 of a running Dask scheduler (default: a local cluster on 127.0.0.1)"))]
JsonOpt = Annotated[bool, typer.Option("--json", help="print machine-readable JSON")]
ModelIdOpt = Annotated[str, typer.Option("--model-id", help="the mask's model id (see "
                                          "`satchunk catalog ls`: ITEM__MODEL-ID)")]


def _csv(value: str | list[str] | None) -> list[str] | None:
    """Names given comma-separated (or as a list of such, by an options file)."""
    if isinstance(value, list):
        value = ",".join(value)
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


def _floats(flag: str, value: str | None) -> tuple[float, ...]:
    """Numbers given comma-separated."""
    try:
        return tuple(float(v) for v in _csv(value) or ())
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a number or a comma-separated list of "
                                 "numbers", param_hint=flag) from None


def _place(store: str | None, endpoint_url: str | None, scheduler: str | None = None,
           as_json: bool = False) -> Place:
    return Place(store, endpoint_url, scheduler, progress=not as_json)


def _say(as_json: bool, result: Any, lines: Callable[[Any], Iterable[str]]) -> None:
    """The result as JSON, or as the lines a person reads."""
    for line in [json.dumps(result, indent=2)] if as_json else lines(result):
        typer.echo(line)


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
    nodata_class: Annotated[int | None, typer.Option("--nodata-class", help=(
        "label raster value meaning unlabelled (besides the file's nodata)"))] = None,
    acquired: Annotated[str | None, typer.Option("--datetime", help=(
        "acquisition time (ISO 8601), one for all paths or comma-separated one per path "
        "(default: from the file names, e.g. _20160517, or TIFF tags)"))] = None,
    datetime_from: Annotated[str | None, typer.Option("--datetime-from", help=(
        "the date's pattern in the file or folder names, e.g. %Y%m%d or %Y-%j"))] = None,
    stack: Annotated[bool, typer.Option("--stack", help=(
        "stack the given single-band files (or a folder's) as the bands of one scene, in "
        "the order given"))] = False,
    scale: Annotated[str | None, typer.Option(help=(
        "reflectance = DN x scale + offset: one value, or comma-separated one per band "
        "(default: the sensor's; 1 for generic rasters)"))] = None,
    offset: Annotated[str | None, typer.Option(help="see --scale (default: the sensor's; 0)")
                      ] = None,
    shard: Annotated[int, typer.Option(help="shard edge in pixels (one object, one task)")] = 2048,
    chunk: Annotated[int, typer.Option(help="inner chunk edge in pixels (training patch)")] = 256,
    scheduler: SchedulerOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Ingest raw scenes into sharded Zarr v3 with STAC items."""
    from .scene_jobs import IngestOptions, ingest_job

    opts = IngestOptions(paths, collection, sensor, _csv(bands), resolution, labels, label_field,
                         _csv(classes), _csv(acquired), shard, chunk, stack, datetime_from,
                         _floats("--scale", scale), _floats("--offset", offset), nodata_class)
    _say(as_json, ingest_job(opts, _place(store, endpoint_url, scheduler, as_json)),
         report.ingested)


@app.command()
def label(
    items: Annotated[list[str], typer.Argument(help="scene item ids")],
    source: Annotated[str, typer.Option("--from", help=(
        "qa (Landsat QA bits) | scl (Sentinel-2 L2A scene classification) | indices "
        "(NDWI/NDVI/NDBI/BSI rules) | mask:MODEL_ID (a finished prediction)"))],
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
    """Label ingested scenes from QA bits, SCL, spectral indices or a prediction mask."""
    from .scene_jobs import LabelOptions, label_job

    _say(as_json, label_job(LabelOptions(items, source, collection, thresholds, qa_layout),
                            _place(store, endpoint_url, scheduler, as_json)), report.labelled)


@app.command()
def predict(
    items: Annotated[list[str] | None, typer.Argument(help="scene item ids")] = None,
    model: Annotated[str, typer.Option("--model", help=(
        "unet | segformer | onnx:PATH | ukis-csmask[:4b|6b][:l1c|l2a] | checkpoint folder or "
        "s3://.../models/NAME/VERSION"))] = "ukis-csmask",
    collection: Annotated[str | None, typer.Option("--collection", help="every scene of this "
                                                   "collection (or where ITEMs are)")] = None,
    products: Annotated[str, typer.Option(help="comma-separated: class,probability,entropy,"
                                          "margin (class is always written)")] = "class",
    batch: Annotated[int | None, typer.Option(help="tiles per model call [default: 1 on a "
                                              "CPU, 128 on a GPU, halved if it runs out of "
                                              "memory]")] = None,
    device: Annotated[str, typer.Option(help="auto (a GPU if torch sees one) | cpu | cuda "
                                        "(a worker per GPU) | cuda:N")] = "auto",
    precision: Annotated[str, typer.Option(help="auto (bf16 on a GPU, fp32 on a CPU) | fp32 | "
                                           "bf16 | fp16")] = "auto",
    compile_model: Annotated[bool, typer.Option("--compile", help="torch.compile the model "
                                                "(GPU; the first shards compile)")] = False,
    store: StoreOpt = None,
    endpoint_url: EndpointOpt = None,
    scheduler: SchedulerOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Segment scenes with a model; masks go to masks/<collection>/<item>/<model-id>.zarr."""
    from .scene_jobs import PredictOptions, predict_job

    opts = PredictOptions(items or (), model, collection, _csv(products) or (), batch, device,
                          precision, compile_model)
    results = predict_job(opts, _place(store, endpoint_url, scheduler, as_json))
    _say(as_json, [{k: r[k] for k in ("collection", "item", "model_id", "mask", "seconds",
                                      "status", "written_shards", "runs_on")} for r in results],
         report.predicted)


@app.command("export-onnx")
def export_onnx_cmd(
    model: Annotated[str, typer.Argument(help="unet | segformer | checkpoint folder")],
    out: Annotated[str, typer.Argument(help="output .onnx path (a .json sidecar goes beside it)")],
) -> None:
    """Export a torch model to ONNX with a dynamic batch axis, checked against torch."""
    from .model_jobs import export_onnx_job

    _say(False, export_onnx_job(model, out), report.exported_onnx)


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
    from .scene_jobs import ExportOptions, export_job

    _say(as_json, export_job(ExportOptions(item, out, model_id, collection, fmt, product),
                             _place(store, endpoint_url, as_json=as_json)), report.exported)


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
    from .scene_jobs import VectorizeOptions, vectorize_job

    res = vectorize_job(VectorizeOptions(item, out, model_id, collection),
                        _place(store, endpoint_url, scheduler, as_json))
    _say(as_json, res, report.vectorized)
    if not as_json and not res["mean_probability"]:
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
    out: Annotated[str | None, typer.Option("--out", help=(
        "where checkpoints go: s3://... or a directory (default: STORE/models/NAME/VERSION)"
    ))] = None,
    epochs: Annotated[int, typer.Option(help="most epochs (early stopping may end sooner)")] = 20,
    steps: Annotated[int, typer.Option(help="optimizer steps per epoch")] = 50,
    batch: Annotated[int, typer.Option(help="patches per step")] = 8,
    lr: Annotated[float, typer.Option(help="peak learning rate (AdamW, warmup + cosine)")] = 1e-3,
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
    workers: Annotated[int, typer.Option(help="host threads reading patches from the store")
                       ] = 8,
    bands: Annotated[str | None, typer.Option(help="comma-separated input bands (default: "
                                              "every band the scenes share)")] = None,
    indices: Annotated[str | None, typer.Option(help="derived input channels: ndvi,ndwi,"
                                                "ndbi,bsi")] = None,
    name: Annotated[str | None, typer.Option(help="model name (default: MODEL-COLLECTION)")] = None,
    version: Annotated[str, typer.Option(help="model version")] = "1",
    device: Annotated[str, typer.Option(help="auto (a GPU if torch sees one) | cpu | cuda | "
                                        "cuda:N")] = "auto",
    precision: Annotated[str, typer.Option(help="auto (bf16 autocast on a GPU, fp16 with "
                                           "gradient scaling where bf16 is missing; fp32 on a "
                                           "CPU) | fp32 | bf16 | fp16")] = "auto",
    compile: Annotated[bool, typer.Option("--compile", help="torch.compile the model (GPU; "
                                          "the first steps compile)")] = False,
    val_patches: Annotated[int, typer.Option("--val-patches", help="most validation chunks "
                                             "per epoch")] = 512,
    resume: Annotated[bool, typer.Option("--resume", help="continue from OUT/last")] = False,
    logdir: Annotated[str | None, typer.Option(help="TensorBoard log folder (default: "
                                               "runs/RUN-ID; also copied to OUT/logs)")] = None,
    store: StoreOpt = None,
    endpoint_url: EndpointOpt = None,
    scheduler: Annotated[str | None, typer.Option("--scheduler", help=(
        "tcp://HOST:8786: run the training loop as one task on a worker of that cluster "
        "(e.g. the GPU node)"))] = None,
    ranks: Annotated[int, typer.Option(help="with --scheduler: DDP ranks, one per worker "
                                       "(its GPU workers on GPUs)")] = 1,
    as_json: JsonOpt = False,
) -> None:
    """Train a segmentation model on patches streamed from the store (on several GPUs or
    processes: start it with torchrun)."""
    from training import TrainConfig, ranks_from_env

    from .model_jobs import TrainOptions, train_job
    from .options_file import TRAIN_OPTIONS, with_options_file

    values = with_options_file(ctx, config_file, TRAIN_OPTIONS)
    fields = {k: values[k] for k in TRAIN_OPTIONS if k not in ("collection", "out")}
    cfg = TrainConfig(**fields | {"collections": list(values["collection"] or []),
                                  "bands": _csv(values["bands"]),
                                  "indices": _csv(values["indices"]) or []})
    result = train_job(TrainOptions(cfg, values["out"], resume, logdir, ranks=ranks),
                       _place(store, endpoint_url, scheduler, as_json),
                       on_epoch=None if as_json else lambda row: typer.echo(report.epoch(row)),
                       echo=None if as_json else typer.echo)
    if ranks_from_env().main:  # under torchrun the other ranks say nothing
        _say(as_json, result, report.trained)


@app.command()
def evaluate(
    model: Annotated[str, typer.Option("--model", help="checkpoint written by `satchunk "
                                       "train`: s3://.../models/NAME/VERSION or a directory")],
    collection: Annotated[list[str] | None, typer.Option("--collection", help="limit to "
                                                         "these collections")] = None,
    split: Annotated[str, typer.Option(help="train | val | test")] = "test",
    batch: Annotated[int, typer.Option(help="patches per model call")] = 8,
    workers: Annotated[int, typer.Option(help="host threads reading patches from the store")
                       ] = 8,
    device: Annotated[str, typer.Option(help="auto (a GPU if torch sees one) | cpu | cuda "
                                        "| cuda:N (bf16 autocast on a GPU)")] = "auto",
    store: StoreOpt = None,
    endpoint_url: EndpointOpt = None,
    scheduler: Annotated[str | None, typer.Option("--scheduler", help=(
        "tcp://HOST:8786: evaluate as one task on a worker of that cluster"))] = None,
    as_json: JsonOpt = False,
) -> None:
    """Per-class IoU, Dice, precision, recall and the confusion matrix over a split."""
    from .model_jobs import EvaluateOptions, evaluate_job

    _say(as_json, evaluate_job(EvaluateOptions(model, collection, split, batch, workers, device),
                               _place(store, endpoint_url, scheduler, as_json)),
         report.evaluated)


@catalog_app.command("ls")
def catalog_ls(
    collection: Annotated[str | None, typer.Option("--collection")] = None,
    store: StoreOpt = None,
    endpoint_url: EndpointOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List collections and their items."""
    from .scene_jobs import catalog_rows

    st, rows = catalog_rows(_place(store, endpoint_url), collection)
    _say(as_json, rows, lambda rows: report.catalog(rows, st, collection))


@catalog_app.command("show")
def catalog_show(
    item: Annotated[str, typer.Argument(help="item id")],
    collection: Annotated[str | None, typer.Option("--collection")] = None,
    store: StoreOpt = None,
    endpoint_url: EndpointOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Print an item's STAC JSON."""
    from .scene_jobs import catalog_item

    d = catalog_item(item, _place(store, endpoint_url), collection)
    typer.echo(json.dumps(d, indent=2 if not as_json else None))


@store_app.command("serve")
def store_serve(
    directory: Annotated[str, typer.Option("--dir", help="data directory")] = ".satchunk-s3",
    host: Annotated[str, typer.Option(help="address to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="S3 port (0 = a free one)")] = 9000,
    bucket: Annotated[str, typer.Option(help="bucket to create")] = "satchunk",
) -> None:
    """Serve an S3-compatible store (SeaweedFS) until Ctrl-C."""
    from .serve import serve_store

    serve_store(directory, host, port, bucket)


@app.command()
def dashboard(
    store: StoreOpt = None,
    endpoint_url: EndpointOpt = None,
    host: Annotated[str, typer.Option(help="address to bind (127.0.0.1 keeps it on this "
                                      "machine; see the README before exposing it)")
                    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port (0 = any free one)")] = 8050,
    allowed_host: Annotated[list[str] | None, typer.Option(
        "--allowed-host", help="another HOST or HOST:PORT browsers reach it by (a proxy's "
        "name, say); repeatable. Other Host headers get a 400")] = None,
) -> None:
    """Serve the web dashboard (catalog, masks, dataset charts, runs) until Ctrl-C."""
    from .serve import serve_dashboard

    serve_dashboard(_place(store, endpoint_url), host, port, allowed_host or [])


@app.command()
def demo(
    data: Annotated[str, typer.Option("--dir", help="the demo's store folder")] = ".satchunk-demo",
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
        typer.echo("interrupted: re-run the same command to finish the missing shards", err=True)
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
