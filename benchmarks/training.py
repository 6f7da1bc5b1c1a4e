"""Training loader benchmarks on the real Sentinel-2 crop with spectral weak labels,
read from the embedded S3 server.

P4: balanced loader patches/s (2 DataLoader workers) / patches/s the training step
consumes (forward + backward + AdamW on in-memory batches of the same patches), for
the default UNet and for SegFormer (target >= 3 on CPU).
P5: balanced / uniform loader patches/s (target >= 0.9).
Medians of --repeats runs; loader and step are timed one after the other in one run.

    python -m benchmarks.training [--patch 256] [--batch 8] [--batches 40] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from benchmarks._results import save
from chunkstore import open_store, start_s3_server
from ingest import check_inputs, ingest_scenes, label_scene
from models import new_model
from satchunk.cluster import dask_client
from satchunk.demo import sample_scenes
from training import PatchDataset, PlannedPatch, TrainConfig, chunk_weights, draw, prepare
from training._dataset import loader

COLL = "bench"


def labelled_store(tmp: Path, shard: int, chunk: int):
    server = start_s3_server(tmp / "s3", bucket="bench")
    env = server.env("train")
    store = open_store(env["SATCHUNK_STORE"], env=env)
    with dask_client(workers=2, quiet=True) as client:
        scenes = check_inputs([str(sample_scenes()["sentinel-2"])], COLL, shard=shard,
                              chunk=chunk, acquired="2020-01-01T00:00:00Z")
        ingest_scenes(scenes, COLL, store, client, shard=shard, chunk=chunk, progress=False)
        label_scene(store, client, scenes[0].item_id, "indices", collection=COLL,
                    progress=False)
    return server, store


def loader_rate(store, plan, spec, sampler, patch, batch, batches, seed, workers=2):
    c = plan.candidates["train"]
    w = chunk_weights(c.counts, sampler)
    d = draw(w, batch * batches, np.random.default_rng(seed), chunk=patch, patch=patch)
    ds = PatchDataset(store, store.credentials, plan.scenes, spec,
                      [PlannedPatch(int(c.scene[x.candidate]), int(c.y0[x.candidate]),
                                    int(c.x0[x.candidate]), x.dy, x.dx, x.aug) for x in d],
                      patch)
    t0 = time.perf_counter()
    n = 0
    first = None
    for x, y in loader(ds, batch, workers):
        n += len(x)
        if first is None:
            first = (x, y)
    return n / (time.perf_counter() - t0), first


def step_rate(kind, spec, batch_xy, steps=8):
    import torch

    adapter = new_model(kind, bands=spec.bands, classes=spec.classes, indices=spec.indices)
    m = adapter.module.train()
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3)
    x, y = batch_xy
    times = []
    for i in range(steps + 2):
        t0 = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(adapter.logits(x), y, ignore_index=255)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i >= 2:
            times.append(time.perf_counter() - t0)
    return len(x) / statistics.median(times)


def run(patch, batch, batches, repeats, out):
    tmp = Path(tempfile.mkdtemp(prefix="satchunk-bench-train-"))
    server, store = labelled_store(tmp, shard=2 * patch, chunk=patch)
    results = {"date": datetime.now(UTC).isoformat(timespec="seconds"),
               "machine": f"{platform.node()} {os.cpu_count()} cores {platform.machine()}",
               "patch": patch, "batch": batch, "patches_per_run": batch * batches,
               "loader_workers": 2}
    try:
        plan, spec, _ = prepare(store, TrainConfig(collections=[COLL], patch=patch))
        rates = {"balanced": [], "uniform": []}
        steps = {"unet": [], "segformer": []}
        for r in range(repeats):
            for sampler in ("balanced", "uniform"):
                rate, first = loader_rate(store, plan, spec, sampler, patch, batch, batches, r)
                rates[sampler].append(rate)
                print(f"run {r} {sampler}: {rate:.1f} patches/s")
            for kind in steps:
                steps[kind].append(step_rate(kind, spec, first))
                print(f"run {r} {kind} step: {steps[kind][-1]:.2f} patches/s")
        med = {k: round(statistics.median(v), 2) for k, v in (rates | steps).items()}
        results["patches_per_s"] = med
        results["P4"] = {k: {"value": round(med["balanced"] / med[k], 2), "target": ">= 3",
                             "met": med["balanced"] / med[k] >= 3} for k in steps}
        p5 = med["balanced"] / med["uniform"]
        results["P5"] = {"value": round(p5, 3), "target": ">= 0.9", "met": p5 >= 0.9}
    finally:
        server.stop()
    save(results, out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--patch", type=int, default=256)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--batches", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default="benchmarks/results/training.json")
    a = ap.parse_args()
    run(a.patch, a.batch, a.batches, a.repeats, Path(a.out))


if __name__ == "__main__":
    main()
