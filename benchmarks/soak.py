"""Soak: a long training stream from the embedded S3 server keeps memory and open file
descriptors flat.

Epoch after epoch, as ``satchunk train`` runs them (a fresh balanced draw through the
run's one PatchStream, its host threads reading ahead), balanced patches of the real
Sentinel-2 crop with its weak labels stream from S3 for ``--minutes``. Every few
seconds the RSS and open descriptors of the process (and of any children) are
sampled. Flat means the last minute's median is within 10 % (RSS) and 8 descriptors
of the first minute's after warm-up.

    python -m benchmarks.soak [--minutes 10] [--out benchmarks/results/soak.json]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from benchmarks._results import COLLECTION, bench_env, header, save
from benchmarks.training import labelled_store
from training import PatchStream, PlannedPatch, TrainConfig, chunk_weights, draw, prepare

SAMPLE_S = 5.0
WARMUP_S = 60.0


def usage() -> tuple[float, int, int]:
    """(RSS in MB, open descriptors, live loader workers) of this process and its
    children."""
    import psutil

    me = psutil.Process()
    procs = [me, *me.children(recursive=True)]
    rss, fds = 0, 0
    for p in procs:
        try:
            rss += p.memory_info().rss
            fds += p.num_fds()
        except psutil.NoSuchProcess:
            pass
    return rss / 2**20, fds, len(procs) - 1


def stream(store, plan, spec, patch: int, batch: int, steps: int, seconds: float) -> dict:
    c = plan.candidates["train"]
    weights = chunk_weights(c.counts, "balanced")
    samples: list[tuple[float, float, int, int]] = []
    t0 = time.perf_counter()
    next_sample, epoch, patches = 0.0, 0, 0
    reader = PatchStream(store, plan.scenes, spec)
    while time.perf_counter() - t0 < seconds:
        draws = draw(weights, steps * batch, np.random.default_rng([0, epoch]), chunk=patch,
                     patch=patch)
        chosen = [PlannedPatch(int(c.scene[d.candidate]), int(c.y0[d.candidate]),
                               int(c.x0[d.candidate]), d.dy, d.dx, d.aug) for d in draws]
        for hb in reader.batches(chosen, patch, batch):
            patches += len(hb)
            now = time.perf_counter() - t0
            if now >= next_sample:
                samples.append((now, *usage()))
                next_sample = now + SAMPLE_S
        epoch += 1
        print(f"epoch {epoch}: {patches} patches, {samples[-1][1]:.0f} MB, "
              f"{samples[-1][2]} fds at {time.perf_counter() - t0:.0f} s", flush=True)
    wall = time.perf_counter() - t0
    reader.close()
    return {"seconds": round(wall), "epochs": epoch, "patches": patches,
            "patches_per_s": round(patches / wall, 1), "samples": samples}


def verdict(samples: list[tuple[float, float, int, int]]) -> dict:
    end = samples[-1][0]
    first = [s for s in samples if WARMUP_S <= s[0] < WARMUP_S + 60] or samples[:3]
    last = [s for s in samples if s[0] >= end - 60] or samples[-3:]
    rss0, rss1 = (statistics.median(s[1] for s in w) for w in (first, last))
    fd0, fd1 = (statistics.median(s[2] for s in w) for w in (first, last))
    return {
        "rss_mb": {"first_minute": round(rss0), "last_minute": round(rss1),
                   "max": round(max(s[1] for s in samples)), "ratio": round(rss1 / rss0, 3),
                   "flat": rss1 <= 1.10 * rss0},
        "open_fds": {"first_minute": fd0, "last_minute": fd1,
                     "max": max(s[2] for s in samples), "flat": fd1 <= fd0 + 8},
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--patch", type=int, default=256)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=50, help="batches per epoch (train's default)")
    ap.add_argument("--out", default="benchmarks/results/soak.json")
    a = ap.parse_args()
    with bench_env() as bench:
        store = labelled_store(bench, shard=2 * a.patch, chunk=a.patch)
        plan, spec, _ = prepare(store, TrainConfig(collections=[COLLECTION], patch=a.patch))
        run = stream(store, plan, spec, a.patch, a.batch, a.steps, a.minutes * 60)
    results = header() | {k: v for k, v in run.items() if k != "samples"}
    results |= verdict(run["samples"])
    results["samples"] = [[round(t), round(r), f, w] for t, r, f, w in run["samples"]]
    save(results, Path(a.out))


if __name__ == "__main__":
    main()
