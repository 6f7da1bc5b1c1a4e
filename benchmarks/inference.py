"""Inference benchmarks on mosaics of the real Sentinel-2 crop, against the embedded S3 server.

P1: end-to-end predict (S3 -> Dask -> S3) time / pure model compute on the identical
padded tiles (every task's tiles, each tile of the scene once, on the inputs the
task builds) with the same workers and threads, for the UNet, SegFormer and the
ukis-csmask ONNX model (target <= 1.10).
Scheduling: Dask's share of the graph's wall time (each worker thread's wait before its
first task and between tasks, over threads x wall from the first task start to the
last task end; target <= 2 %), the idle tail apart, tasks per second, and
the useful-pixel share of the overlap (mask pixels / pixels the model computes, and
mask pixels / pixels read with the context).
P2-inference: peak worker RSS predicting 16384^2 / 2048^2 (target <= 1.15), with a
small UNet so that the pipeline's own buffers, not the model's, dominate the RSS.
Medians of --repeats runs.

    python -m benchmarks.inference [--models unet,segformer,ukis-csmask:4b]
        [--p1-size 2048] [--p1-shard 1024] [--sizes 2048,8192,16384] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from benchmarks._results import (
    COLLECTION,
    Bench,
    bench_env,
    fresh_workers,
    header,
    paired_median,
    save,
)
from benchmarks.ingest import SHARD, Busy, PeakRSS, km2
from chunkstore import Store, open_scene, read_scene, scene_key
from inference import (
    Radiometry,
    TilePlan,
    check_item,
    load_checked,
    model_ref,
    worker_model,
    worker_threads,
)
from inference._block import read_span, region_inputs, tiles_region
from models import call_batch, new_model, save_checkpoint
from satchunk import PredictOptions, predict_job

CHUNK = 256
P2_MODEL = {"width": 4, "depth": 2}  # unet: the pipeline's memory, not the model's


def _pure(args):
    """Model calls only, on the tiles one predict task computes."""
    x, origin, starts, ref = args
    adapter = worker_model(ref, None)
    T = adapter.spec.tile
    batch = call_batch(adapter)
    t0 = time.perf_counter()
    for b in range(0, len(starts), batch):
        tiles = np.stack([x[:, ty - origin[0]:ty - origin[0] + T, tx - origin[1]:tx - origin[1] + T]
                          for ty, tx in starts[b:b + batch]])
        adapter.predict(tiles)
    return len(starts), time.perf_counter() - t0


def _warm(ref) -> None:
    """Load the model in this worker and run it once (first calls are slower)."""
    adapter = worker_model(ref, None)
    s = adapter.spec
    adapter.predict(np.zeros((1, s.in_channels, s.tile, s.tile), np.float32))


def _task_tiles(plan: TilePlan) -> list[tuple[list[int], list[int]]]:
    """The tile rectangles of every predict task: each shard's inner tiles, and each
    owner's shared tiles by group."""
    out = [plan.inner(s) for s in plan.shards()]
    out += [g for o in plan.owners() for g in plan.groups(o).values()]
    return [(ys, xs) for ys, xs in out if ys and xs]


def _padded_blocks(store: Store, item: str, adapter, names, idx, shard: int):
    """Every task's model inputs (mirrored at scene edges) and tiles, as the tasks build them."""
    key = scene_key(COLLECTION, item)
    raw = open_scene(store, key, mask_and_scale=False).reflectance.values[list(idx)]
    info = read_scene(store, key)
    rad = Radiometry(info.scale, info.offset, info.fill)
    H, W = raw.shape[1:]
    T = adapter.spec.tile
    plan = TilePlan.of(adapter.spec, (H, W), shard)
    out = []
    for ys, xs in _task_tiles(plan):
        region = tiles_region(ys, xs, T)
        x, _ = region_inputs(lambda y0, y1, x0, x1: raw[:, y0:y1, x0:x1], names, adapter.spec,
                             rad, region, (H, W))
        out.append((np.ascontiguousarray(x), (region[0], region[2]),
                    [(ty, tx) for ty in ys for tx in xs]))
    return out


def useful_share(spec, size: int, shard: int) -> dict:
    """Mask pixels over the pixels the model computes (tiles x tile^2) and over the
    pixels the tasks read (each shard, and the strips its shared tiles cover)."""
    plan = TilePlan.of(spec, (size, size), shard)
    read = 0
    for s in plan.shards():
        ys, xs = plan.inner(s)
        win = plan.window(s)
        y0, y1, x0, x1 = read_span(tiles_region(ys, xs, spec.tile) if ys and xs else win,
                                   (size, size), win)
        read += (y1 - y0) * (x1 - x0)
    for o in plan.owners():
        for ys, xs in plan.groups(o).values():
            y0, y1, x0, x1 = read_span(tiles_region(ys, xs, spec.tile), (size, size))
            read += (y1 - y0) * (x1 - x0)
    tiles = plan.tile_count()
    return {"tiles": tiles, "computed": round(size * size / (tiles * spec.tile ** 2), 3),
            "read": round(size * size / read, 3)}


def _scheduling(stream: list[dict], nthreads: int) -> dict:
    """Dask's share of the graph's wall time, from the task stream: on every worker
    thread, the wait before its first task and the gaps between its tasks. The time
    after a thread's last task, while others finish theirs, is load imbalance (no task
    was left to give it) and is reported apart as ``tail_share``."""
    per: dict[tuple, list[tuple[float, float]]] = {}
    for t in stream:
        for s in t["startstops"]:
            if s["action"] == "compute":
                per.setdefault((t["worker"], t.get("thread")), []).append((s["start"], s["stop"]))
    t0 = min(a for iv in per.values() for a, _ in iv)
    t1 = max(b for iv in per.values() for _, b in iv)
    wall = t1 - t0
    gaps = tail = busy = 0.0
    for iv in per.values():
        iv.sort()
        gaps += iv[0][0] - t0 + sum(max(0.0, nxt[0] - cur[1])
                                    for cur, nxt in zip(iv, iv[1:], strict=False))
        tail += t1 - iv[-1][1]
        busy += sum(b - a for a, b in iv)
    idle_threads = max(0, nthreads - len(per))  # threads that got no task at all
    cap = nthreads * wall
    return {"tasks": len(stream), "graph_wall_s": round(wall, 2), "task_s": round(busy, 2),
            "dask_share": round(gaps / cap, 4),
            "tail_share": round((tail + idle_threads * wall) / cap, 4),
            "tasks_per_s": round(len(stream) / wall, 2)}


def _fresh(store: Store) -> Store:
    """The store with every mask and mask item removed, so predict runs again."""
    s = store.with_credentials(store.credentials)
    s.delete("masks")
    for key in [k for k in s.list(f"stac/{COLLECTION}") if "__" in k]:
        s.delete(key)
    return s


def p1(bench: Bench, model: str, store: Store, item: str, shard: int, size: int,
       repeats: int) -> dict:
    """P1, scheduling and inference CPU-s/km^2 for one model on one ingested scene."""
    from distributed import get_task_stream

    client = bench.client
    nthreads = sum(client.nthreads().values())
    ref = model_ref(model, store, worker_threads(client))
    adapter = load_checked(ref, store)
    _, idx, names = check_item(store, item, adapter, COLLECTION)
    blocks = _padded_blocks(store, item, adapter, names, idx, shard)
    futs = client.scatter([b[0] for b in blocks], broadcast=True)  # no transfer is timed
    args = [(f, b[1], b[2], ref) for f, b in zip(futs, blocks, strict=True)]
    client.run(_warm, ref)
    e2e, pure, sched, cpu, joules = [], [], [], [], []
    for i in range(repeats):
        t0 = time.perf_counter()
        res = client.gather(client.map(_pure, args, pure=False))
        pure.append(time.perf_counter() - t0)
        s = _fresh(store)
        with Busy() as b, get_task_stream(client) as ts:
            predict_job(PredictOptions([item], model, COLLECTION), bench.place(s, "predict"))
        e2e.append(b.wall)
        cpu.append(b.cpu)
        joules.append(b.joules)
        sched.append(_scheduling(ts.data, nthreads))
        print(f"P1 {model} run {i}: end-to-end {e2e[-1]:.2f} s, model compute {pure[-1]:.2f} s, "
              f"{sum(r[0] for r in res)} tiles, Dask share {sched[-1]['dask_share']:.2%}")
    del futs
    me, mp = statistics.median(e2e), statistics.median(pure)
    value = paired_median(e2e, pure)
    mid = sorted(sched, key=lambda r: r["dask_share"])[len(sched) // 2]
    return {"model_id": adapter.spec.model_id, "end_to_end_s": round(me, 2),
            "model_compute_s": round(mp, 2), "value": round(value, 3),
            "scheduling": mid, "useful_pixels": useful_share(adapter.spec, size, shard),
            "cpu_s_per_km2": round(statistics.median(cpu) / km2(size), 4),
            "joules_per_km2": None if None in joules
            else round(statistics.median(joules) / km2(size), 3)}


def p2_model(store: Store) -> str:
    """A small UNet checkpoint in the store; its reference."""
    adapter = new_model("unet", **P2_MODEL)
    for name, data in save_checkpoint(adapter.module, adapter.spec).items():
        store.write_bytes(f"models/p2-unet/1/{name}", data)
    return store.url("models/p2-unet/1")


def p2(bench: Bench, scenes: dict[int, tuple[Store, str]]) -> dict:
    """Peak worker RSS predicting each scene with a fresh worker."""
    client = bench.client
    rss, secs = {}, {}
    for size, (store, item) in sorted(scenes.items()):
        opts = PredictOptions([item], p2_model(store), COLLECTION)
        fresh_workers(client)
        with PeakRSS(client) as m:
            t0 = time.perf_counter()
            predict_job(opts, bench.place(store, "predict"))
            secs[size] = round(time.perf_counter() - t0, 1)
        rss[size] = m.max_worker_mb
        print(f"predict {size}^2: {secs[size]} s, peak worker RSS {rss[size]:.0f} MB")
    lo, hi = min(rss), max(rss)
    return {"model": f"unet {P2_MODEL}", "shard": SHARD, "seconds": secs,
            "peak_rss_mb": {str(k): round(v, 1) for k, v in rss.items()},
            "value": round(rss[hi] / rss[lo], 3), "target": "<= 1.15",
            "met": rss[hi] / rss[lo] <= 1.15}


def measure_p1(bench: Bench, models: list[str], size: int, shard: int, repeats: int) -> dict:
    store, item = bench.ingested(size, "p1", shard, CHUNK)
    per = {m: p1(bench, m, store, item, shard, size, repeats) for m in models}
    worst = max(r["value"] for r in per.values())
    return {"size": size, "shard": shard, "models": per, "value": worst, "target": "<= 1.10",
            "met": worst <= 1.10}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="unet,segformer,ukis-csmask:4b")
    ap.add_argument("--sizes", default="2048,8192,16384")
    ap.add_argument("--p1-size", type=int, default=2048)
    ap.add_argument("--p1-shard", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default="benchmarks/results/inference.json")
    a = ap.parse_args()
    with bench_env() as bench:
        results = header()
        results["P1"] = measure_p1(bench, a.models.split(","), a.p1_size, a.p1_shard,
                                   a.repeats)
        scenes = {s: bench.ingested(s, f"p2-{s}", SHARD, CHUNK)
                  for s in (int(v) for v in a.sizes.split(","))}
        results["P2"] = p2(bench, scenes)
    save(results, Path(a.out))


if __name__ == "__main__":
    main()
