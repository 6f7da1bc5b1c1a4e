"""Training loader benchmarks on the real Sentinel-2 crop (13 bands) with spectral weak
labels, read from the embedded S3 server.

P4: balanced loader patches/s per core (host batches of stored DN and labels, as
they cross to the device; 256^2, 8 host threads), and its ratio to the raw read rate
of the same inner chunks (ranged GET + checksum + decompression only, same threads,
same batches). Beside it: patches/s with the model inputs and augmentation made on
this CPU too (the CPU training path), and what the training step consumes
(forward + backward + AdamW on in-memory batches) for the default UNet and SegFormer.
P5: balanced / uniform loader patches/s (target >= 0.9).
s3_client: the raw read rate through obstore over the same through s3fs.
split: where one patch's time goes, one thread, milliseconds per patch.
Cost: the machine's busy CPU seconds per km^2 of patches stepped on (UNet forward,
backward and AdamW; 10 m pixels).
Medians of --repeats runs; each run times every side of its ratios one after the other.

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
from chunkstore import ChunkReader, Store
from models import new_model
from satchunk import IngestOptions, LabelOptions, ingest_job, label_job, sample_scenes
from training import (
    PatchStream,
    PlannedPatch,
    TrainConfig,
    chunk_weights,
    draw,
    prepare,
    to_device,
)

THREADS = 8


def labelled_store(bench: Bench, shard: int, chunk: int) -> Store:
    store = bench.store("train")
    opts = IngestOptions([str(sample_scenes()["sentinel-2"])], COLLECTION, acquired=ACQUIRED,
                         shard=shard, chunk=chunk)
    (scene,) = ingest_job(opts, bench.place(store, "ingest"))
    label_job(LabelOptions([scene["item"]], "indices", COLLECTION), bench.place(store, "label"))
    return store


def planned(plan, sampler: str, patch: int, n: int, seed: int) -> list[PlannedPatch]:
    c = plan.candidates["train"]
    d = draw(chunk_weights(c.counts, sampler), n, np.random.default_rng(seed), chunk=patch,
             patch=patch)
    return [PlannedPatch(int(c.scene[x.candidate]), int(c.y0[x.candidate]),
                         int(c.x0[x.candidate]), x.dy, x.dx, x.aug) for x in d]


def loader_rate(stream: PatchStream, patches, patch: int, batch: int, inputs: bool = False
                ) -> tuple[float, object]:
    """Patches/s of host batches (with ``inputs``: and the model inputs made on this CPU),
    and the first batch (inputs, labels)."""
    t0 = time.perf_counter()
    n, first = 0, None
    for hb in stream.batches(patches, patch, batch):
        n += len(hb)
        if inputs or first is None:
            xy = to_device(hb, stream, "cpu")
            first = first or xy
    return n / (time.perf_counter() - t0), first


class S3fsRanges:
    """``store`` with its ranged reads sent through s3fs (``cat_ranges``) rather than
    obstore: the client the loader was chosen against."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def __getattr__(self, name: str):
        return getattr(self._store, name)

    def read_ranges(self, key: str, ranges: list[tuple[int, int]]) -> list[bytes]:
        path = self._store._path(key)
        size = self._store.fs.size(path) if any(a < 0 for a, _ in ranges) else 0
        spans = [(size + a, size) if a < 0 else (a, b) for a, b in ranges]
        return self._store.fs.cat_ranges([path] * len(spans), [a for a, _ in spans],
                                         [b for _, b in spans])


def raw_rate(store: Store, plan, patches, batch: int, client: str = "obstore") -> float:
    """Patches/s of reading the same inner chunks, batch by batch: ranged GETs, checksums
    and decompression only (shard indexes read before the clock starts); ``client``
    ``s3fs`` sends the GETs through s3fs instead."""
    from concurrent.futures import ThreadPoolExecutor

    if client == "s3fs":
        store = S3fsRanges(store)
    with ThreadPoolExecutor(THREADS) as pool:
        readers = [ChunkReader(store, s.key, pool) for s in plan.scenes]
        spans = [patches[i:i + batch] for i in range(0, len(patches), batch)]

        def chunks(span, s):
            ref = plan.scenes[s]
            return [(p.y0 // ref.chunk, p.x0 // ref.chunk) for p in span if p.scene == s]

        for span in spans:  # warm: every shard index
            for s, r in enumerate(readers):
                r.read("label", chunks(span, s))
        t0 = time.perf_counter()
        with ThreadPoolExecutor(4) as ahead:  # as many batches in flight as the stream
            def one(span):
                for s, r in enumerate(readers):
                    at = chunks(span, s)
                    r.read("reflectance", [(0, y, x) for y, x in at])
                    r.read("label", at)
            list(ahead.map(one, spans))
        return len(patches) / (time.perf_counter() - t0)


def split_ms(store: Store, plan, spec, patches, patch: int) -> dict[str, float]:
    """One thread, one patch at a time: milliseconds per patch in each stage. ``pack``
    (valid pixels, window, copy into the batch) is a batch of one less its two reads."""
    stream = PatchStream(store, plan.scenes, spec, threads=1, prefetch=1)
    reader = stream._readers[0]
    lay = reader.layout("reflectance")
    t: dict[str, list[float]] = {"get_reflectance_chunk": [], "checksum_and_decompress": [],
                                 "label_chunk": [], "pack": [], "inputs_and_augment_on_cpu": []}
    for p in patches:
        shard = (0, p.y0 // lay.shard[1], p.x0 // lay.shard[2])
        key = reader._shard_key("reflectance", shard)
        o, nb = reader._index("reflectance", lay, shard, key)[
            0, (p.y0 % lay.shard[1]) // lay.chunk[1], (p.x0 % lay.shard[2]) // lay.chunk[2]]
        reader.read("label", [(p.y0 // lay.chunk[1], p.x0 // lay.chunk[2])])  # its index
        t0 = time.perf_counter()
        (raw,) = store.read_ranges(key, [(int(o), int(o + nb))])
        t1 = time.perf_counter()
        reader._decode(raw, lay, key)
        t2 = time.perf_counter()
        reader.read("label", [(p.y0 // lay.chunk[1], p.x0 // lay.chunk[2])])
        t3 = time.perf_counter()
        hb = stream.host_batch([p], patch)
        t4 = time.perf_counter()
        to_device(hb, stream, "cpu")
        t5 = time.perf_counter()
        for k, v in zip(t, (t1 - t0, t2 - t1, t3 - t2, (t4 - t3) - (t3 - t0), t5 - t4),
                        strict=True):
            t[k].append(v)
    stream.close()
    return {k: round(1e3 * statistics.median(v), 2) for k, v in t.items()}


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
    cores = os.cpu_count() or 1
    results: dict = {"patch": patch, "batch": batch, "patches_per_run": batch * batches,
                     "host_threads": THREADS, "cores": cores}
    plan, spec, _ = prepare(store, TrainConfig(collections=[COLLECTION], patch=patch))
    stream = PatchStream(store, plan.scenes, spec, threads=THREADS)
    rates: dict[str, list[float]] = {"balanced": [], "uniform": [], "raw": [],
                                     "raw_via_s3fs": [], "balanced_with_cpu_inputs": []}
    steps: dict[str, list[float]] = {"unet": [], "segformer": []}
    cpu: list[float] = []
    distinct: list[float] = []
    for r in range(repeats):
        bal = planned(plan, "balanced", patch, batch * batches, r)
        spans = [bal[i:i + batch] for i in range(0, len(bal), batch)]
        distinct.append(statistics.mean(len({(p.scene, p.y0, p.x0) for p in s}) / len(s)
                                        for s in spans))
        rate, first = loader_rate(stream, bal, patch, batch)
        rates["balanced"].append(rate)
        rates["raw"].append(raw_rate(store, plan, bal, batch))
        rates["raw_via_s3fs"].append(raw_rate(store, plan, bal, batch, "s3fs"))
        rates["uniform"].append(loader_rate(stream, planned(plan, "uniform", patch,
                                                            batch * batches, r), patch,
                                            batch)[0])
        rates["balanced_with_cpu_inputs"].append(loader_rate(stream, bal, patch, batch,
                                                             inputs=True)[0])
        print(f"run {r}: " + ", ".join(f"{k} {v[-1]:.1f}" for k, v in rates.items())
              + " patches/s")
        for kind in steps:
            rate, cpu_per_patch = step_rate(kind, spec, first)
            steps[kind].append(rate)
            if kind == "unet":
                cpu.append(cpu_per_patch)
            print(f"run {r} {kind} step: {rate:.2f} patches/s")
    stream.close()
    med = {k: round(statistics.median(v), 2) for k, v in (rates | steps).items()}
    results["patches_per_s"] = med
    results["distinct_chunks_per_patch"] = round(statistics.median(distinct), 3)
    per_core = statistics.median(rates["balanced"]) / cores
    ratio = paired_median(rates["balanced"], rates["raw"])
    results["P4"] = {
        "value": round(per_core, 1), "target": ">= 100 per core and >= 0.7 of the raw read",
        "met": per_core >= 100 and ratio >= 0.7,
        "per_core": {"value": round(per_core, 1), "target": ">= 100", "met": per_core >= 100},
        "of_raw_read": {"value": round(ratio, 3), "target": ">= 0.7", "met": ratio >= 0.7},
        "over_cpu_step": {k: round(paired_median(rates["balanced_with_cpu_inputs"], v), 1)
                          for k, v in steps.items()},
    }
    results["s3_client"] = {"obstore_over_s3fs": round(paired_median(rates["raw"],
                                                                      rates["raw_via_s3fs"]), 2)}
    p5 = paired_median(rates["balanced"], rates["uniform"])
    results["P5"] = {"value": round(p5, 3), "target": ">= 0.9", "met": p5 >= 0.9}
    results["split_ms_per_patch"] = split_ms(store, plan, spec,
                                             planned(plan, "balanced", patch, 48, 99), patch)
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
