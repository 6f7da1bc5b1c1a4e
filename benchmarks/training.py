"""Training loader benchmarks on the real Sentinel-2 crop with spectral weak labels,
read from the embedded S3 server.

P4: balanced loader patches/s (2 DataLoader workers) / patches/s the training step
consumes (forward + backward + AdamW on in-memory batches of the same patches), for
the default UNet and for SegFormer (target >= 3 on CPU).
P5: balanced / uniform loader patches/s (target >= 0.9).
Cost: the machine's busy CPU seconds per km^2 of patches stepped on (UNet forward,
backward and AdamW; 10 m pixels).
Medians of --repeats runs; loader and step are timed one after the other in one run.

    python -m benchmarks.training [--patch 256] [--batch 8] [--batches 40] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np

from benchmarks._results import ACQUIRED, COLLECTION, Bench, bench_env, header, paired_median, save
from benchmarks.ingest import Busy
from chunkstore import Store
from models import new_model
from satchunk import IngestOptions, LabelOptions, ingest_job, label_job, sample_scenes
from training import PatchDataset, PlannedPatch, TrainConfig, chunk_weights, draw, prepare
from training._dataset import loader


def labelled_store(bench: Bench, shard: int, chunk: int) -> Store:
    store = bench.store("train")
    opts = IngestOptions([str(sample_scenes()["sentinel-2"])], COLLECTION, acquired=ACQUIRED,
                         shard=shard, chunk=chunk)
    (scene,) = ingest_job(opts, bench.place(store, "ingest"))
    label_job(LabelOptions([scene["item"]], "indices", COLLECTION), bench.place(store, "label"))
    return store


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


def step_rate(kind, spec, batch_xy, steps=5):
    """Patches/s of forward + backward + AdamW, and busy CPU seconds per patch."""
    import torch

    torch.set_num_threads(os.cpu_count() or 1)  # as `train` runs; loading a model may lower it
    adapter = new_model(kind, bands=spec.bands, classes=spec.classes, indices=spec.indices)
    m = adapter.module.train()
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3)
    x, y = batch_xy

    def step():
        t0 = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(adapter.logits(x), y, ignore_index=255)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return time.perf_counter() - t0

    step()  # warm-up: the first step allocates the optimizer state
    with Busy() as busy:
        times = [step() for _ in range(steps)]
    return len(x) / statistics.median(times), busy.cpu / (steps * len(x))


def measure(bench: Bench, patch: int, batch: int, batches: int, repeats: int) -> dict:
    store = labelled_store(bench, shard=2 * patch, chunk=patch)
    results: dict = {"patch": patch, "batch": batch, "patches_per_run": batch * batches,
                     "loader_workers": 2}
    plan, spec, _ = prepare(store, TrainConfig(collections=[COLLECTION], patch=patch))
    rates: dict[str, list[float]] = {"balanced": [], "uniform": []}
    steps: dict[str, list[float]] = {"unet": [], "segformer": []}
    cpu: list[float] = []
    for r in range(repeats):
        for sampler in ("balanced", "uniform"):
            rate, first = loader_rate(store, plan, spec, sampler, patch, batch, batches, r)
            rates[sampler].append(rate)
            print(f"run {r} {sampler}: {rate:.1f} patches/s")
        for kind in steps:
            rate, cpu_per_patch = step_rate(kind, spec, first)
            steps[kind].append(rate)
            if kind == "unet":
                cpu.append(cpu_per_patch)
            print(f"run {r} {kind} step: {rate:.2f} patches/s")
    med = {k: round(statistics.median(v), 2) for k, v in (rates | steps).items()}
    results["patches_per_s"] = med
    p4 = {k: paired_median(rates["balanced"], steps[k]) for k in steps}
    results["P4"] = {k: {"value": round(v, 2), "target": ">= 3", "met": v >= 3}
                     for k, v in p4.items()}
    p5 = paired_median(rates["balanced"], rates["uniform"])
    results["P5"] = {"value": round(p5, 3), "target": ">= 0.9", "met": p5 >= 0.9}
    results["cpu_s_per_km2"] = round(statistics.median(cpu) / (patch * patch * 1e-4), 3)
    return results


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--patch", type=int, default=256)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--batches", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default="benchmarks/results/training.json")
    a = ap.parse_args()
    with bench_env() as bench:
        results = header() | measure(bench, a.patch, a.batch, a.batches, a.repeats)
    save(results, Path(a.out))


if __name__ == "__main__":
    main()
