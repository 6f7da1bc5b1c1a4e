"""Does it learn? Trains on the real Sentinel-2 crop with spectral weak labels
(`satchunk label --from indices`), through the job functions the CLI calls, against
the embedded S3 server:

- a small UNet and a SegFormer, balanced sampling: test mIoU on held-out shards;
- the UNet again with uniform sampling at the same steps: the rarest class's IoU;
- `satchunk predict` with the trained UNet checkpoint from the store.

Each run: 10 epochs x 80 steps of 16 patches of 64 px, AdamW at 3e-3, focal + Dice
loss, inputs blue, green, red, nir, swir16 and the four indices.

    python -m benchmarks.learning [--epochs 10] [--steps 80] [--shard 256] [--chunk 128]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from benchmarks._results import header, save
from chunkstore import open_store, start_s3_server
from satchunk import (
    EvaluateOptions,
    IngestOptions,
    LabelOptions,
    Place,
    PredictOptions,
    TrainOptions,
    evaluate_job,
    ingest_job,
    label_job,
    predict_job,
    sample_scenes,
    train_job,
)
from training import TrainConfig

COLL = "s2weak"


def timed(job, *args, **kwargs):
    t0 = time.perf_counter()
    return job(*args, **kwargs), round(time.perf_counter() - t0, 1)


def run(epochs, steps, shard, chunk, out):
    tmp = Path(tempfile.mkdtemp(prefix="satchunk-learning-"))
    server = start_s3_server(tmp / "s3", bucket="learn")
    env = server.env("learn")
    os.chdir(tmp)
    place = Place(open_store(env["SATCHUNK_STORE"], env=env), progress=False,
                  command=("bench", "learning"))
    res = header() | {"epochs": epochs, "steps_per_epoch": steps, "shard": shard, "chunk": chunk}
    try:
        (ing,) = ingest_job(IngestOptions([str(sample_scenes()["sentinel-2"])], COLL,
                                          shard=shard, chunk=chunk), place)
        item = ing["item"]
        (lab,) = label_job(LabelOptions([item], "indices", COLL), place)
        res["label"] = {k: lab[k] for k in ("classes", "class_pixels")}
        common = {"collections": [COLL], "epochs": epochs, "steps": steps, "batch": 16,
                  "patch": 64, "lr": 3e-3, "loss": "focal-dice",
                  "bands": ["blue", "green", "red", "nir", "swir16"],
                  "indices": ["ndvi", "ndwi", "ndbi", "bsi"], "patience": epochs}
        runs = {"unet-balanced": {"model": "unet"},
                "segformer-balanced": {"model": "segformer"},
                "unet-uniform": {"model": "unet", "sampler": "uniform"}}
        for name, extra in runs.items():
            uri = env["SATCHUNK_STORE"] + f"/models/{name}/1"
            cfg = TrainConfig(**common, **extra, name=name)
            tr, secs = timed(train_job, TrainOptions(cfg, uri), place)
            ev = evaluate_job(EvaluateOptions(uri), place)
            res[name] = {"train_seconds": secs, "best_epoch": tr["best_epoch"],
                         "best_val_miou": round(tr["best_val_miou"], 4),
                         "test_miou": round(ev["miou"], 4),
                         "test_overall_accuracy": round(ev["overall_accuracy"], 4),
                         "test_iou": {k: None if v["iou"] is None else round(v["iou"], 4)
                                      for k, v in ev["per_class"].items()},
                         "test_support": {k: v["support"] for k, v in ev["per_class"].items()}}
            print(name, res[name])
        pixels = res["label"]["class_pixels"]
        rarest = min(pixels, key=lambda k: pixels[k] if pixels[k] else float("inf"))
        res["rarest_class"] = {"class": rarest,
                               "balanced_iou": res["unet-balanced"]["test_iou"][rarest],
                               "uniform_iou": res["unet-uniform"]["test_iou"][rarest]}
        uri = env["SATCHUNK_STORE"] + "/models/unet-balanced/1"
        (pr,), secs = timed(predict_job, PredictOptions([item], uri, COLL), place)
        res["predict_with_trained_unet"] = {"mask": pr["mask"], "seconds": secs}
    finally:
        server.stop()
    save(res, out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--steps", type=int, default=80)
    ap.add_argument("--shard", type=int, default=256)
    ap.add_argument("--chunk", type=int, default=128)
    ap.add_argument("--out", default="benchmarks/results/learning.json")
    a = ap.parse_args()
    run(a.epochs, a.steps, a.shard, a.chunk, Path(a.out).resolve())


if __name__ == "__main__":
    main()
