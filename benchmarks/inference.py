"""Inference benchmarks on mosaics of the real Sentinel-2 crop, against the embedded S3 server.

P1: end-to-end predict (S3 -> Dask -> S3) time / pure model compute on the identical
padded tiles (every shard with its context) with the same workers and threads
(target <= 1.10).
P2-inference: peak worker RSS predicting 16384^2 / 2048^2 (target <= 1.15).
Medians of --repeats runs.

    python -m benchmarks.inference [--model ukis-csmask:4b] [--sizes 2048,16384]
                                   [--p1-size 4096] [--repeats 3]
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
from benchmarks.ingest import PeakRSS
from benchmarks.mosaic import build_mosaic
from chunkstore import open_store, start_s3_server
from inference import (
    check_item,
    context_depth,
    context_window,
    load_checked,
    model_ref,
    predict_item,
    tile_starts,
    worker_model,
    worker_threads,
)
from inference._block import _mirror
from ingest import check_inputs, ingest_scenes
from models import model_inputs
from satchunk.cluster import dask_client
from satchunk.demo import sample_scenes

SHARD, CHUNK = 2048, 256


def _ingest(server, tmp, client, size, prefix):
    env = server.env(prefix)
    store = open_store(env["SATCHUNK_STORE"], env=env)
    folder = build_mosaic(sample_scenes()["sentinel-2"], tmp, size)
    scenes = check_inputs([str(folder)], "bench", shard=SHARD, chunk=CHUNK,
                          acquired="2020-01-01T00:00:00Z")
    ingest_scenes(scenes, "bench", store, client, shard=SHARD, chunk=CHUNK, progress=False)
    return store, scenes[0].item_id


def _pure(args):
    """Model calls only, on the tiles the pipeline computes for one block."""
    x, origin, interior, ref, batch = args
    adapter = worker_model(ref, None)
    spec = adapter.spec
    T, S = spec.tile, spec.stride
    y0, x0, h, w = interior
    ys = tile_starts(y0, y0 + h, T, S, spec.tile_offset)
    xs = tile_starts(x0, x0 + w, T, S, spec.tile_offset)
    starts = [(ty, tx) for ty in ys for tx in xs]
    t0 = time.perf_counter()
    for b in range(0, len(starts), batch):
        tiles = np.stack([x[:, ty - origin[0]:ty - origin[0] + T, tx - origin[1]:tx - origin[1] + T]
                          for ty, tx in starts[b:b + batch]])
        adapter.predict(tiles)
    return len(starts), time.perf_counter() - t0


def _padded_blocks(store, item, adapter, names, idx):
    """Every shard's normalized, mirror-padded model inputs, as the block function makes."""
    from chunkstore import ShardGrid, open_scene, scene_key
    from inference import Radiometry

    ds = open_scene(store, scene_key("bench", item), mask_and_scale=False)
    raw = ds.reflectance.values[list(idx)]
    a = ds.reflectance.attrs  # not decoded: CF attributes stay attributes
    rad = Radiometry(a.get("scale_factor", 1.0), a.get("add_offset", 0.0),
                     float(a.get("_FillValue", 0)))
    d = context_depth(adapter.spec)
    H, W = raw.shape[1:]
    out = []
    for sy, sx in ShardGrid(H, W, SHARD, CHUNK).shards():
        y0, x0, h, w = interior = ShardGrid(H, W, SHARD, CHUNK).window(sy, sx)
        wy0, wy1, wx0, wx1 = context_window(interior, d, (H, W))
        x, _ = model_inputs(raw[:, wy0:wy1, wx0:wx1], names, adapter.spec, rad)
        x = _mirror(x, ((0, 0), (wy0 - (y0 - d), y0 + h + d - wy1),
                        (wx0 - (x0 - d), x0 + w + d - wx1)))
        out.append((x, (y0 - d, x0 - d), interior))
    return out


def run(model, sizes, p1_size, repeats, batch, out):
    tmp = Path(tempfile.mkdtemp(prefix="satchunk-bench-"))
    server = start_s3_server(tmp / "s3", bucket="bench")
    results = {"date": datetime.now(UTC).isoformat(timespec="seconds"),
               "machine": f"{platform.node()} {os.cpu_count()} cores {platform.machine()}",
               "model": model, "shard": SHARD, "batch": batch}
    try:
        with dask_client(workers=2, quiet=True) as client:
            env = server.env("models")
            root = open_store(env["SATCHUNK_STORE"], env=env)
            ref = model_ref(model, root, worker_threads(client))
            adapter = load_checked(ref, root)
            results["model_id"] = adapter.spec.model_id
            # P1: end-to-end against model compute alone on the same tiles
            store, item = _ingest(server, tmp, client, p1_size, "p1")
            _, idx, names = check_item(store, item, adapter, "bench")
            blocks = _padded_blocks(store, item, adapter, names, idx)
            futs = client.scatter([b[0] for b in blocks])
            e2e, pure = [], []
            for i in range(repeats):
                client.gather(client.map(_pure, [(f, b[1], b[2], ref, batch)
                                                 for f, b in zip(futs, blocks, strict=True)],
                                         pure=False))  # warm: models loaded in every worker
                t0 = time.perf_counter()
                res = client.gather(client.map(_pure, [(f, b[1], b[2], ref, batch)
                                                       for f, b in zip(futs, blocks, strict=True)],
                                               pure=False))
                pure.append(time.perf_counter() - t0)
                s = store.with_credentials(store.credentials)
                s.delete("masks")
                for key in [k for k in s.list("stac/bench") if "__" in k]:
                    s.delete(key)
                t0 = time.perf_counter()
                predict_item(s, client, item, ref, adapter, collection="bench", batch=batch,
                             progress=False)
                e2e.append(time.perf_counter() - t0)
                print(f"P1 run {i}: end-to-end {e2e[-1]:.1f} s, model compute {pure[-1]:.1f} s, "
                      f"{sum(r[0] for r in res)} tiles")
            del futs
            me, mp = statistics.median(e2e), statistics.median(pure)
            results["P1"] = {"size": p1_size, "end_to_end_s": round(me, 2),
                             "model_compute_s": round(mp, 2), "value": round(me / mp, 3),
                             "target": "<= 1.10", "met": me / mp <= 1.10}
            # P2: memory against scene size
            rss = {}
            for size in sizes:
                store, item = _ingest(server, tmp, client, size, f"p2-{size}")
                client.restart()
                with PeakRSS(client) as m:
                    t0 = time.perf_counter()
                    predict_item(store, client, item, ref, adapter, collection="bench",
                                 batch=batch, progress=True)
                    dt = time.perf_counter() - t0
                rss[size] = m.max_worker_mb
                print(f"predict {size}^2: {dt:.1f} s, peak worker RSS {rss[size]:.0f} MB")
            lo, hi = min(sizes), max(sizes)
            results["P2_inference"] = {"peak_rss_mb": {str(k): round(v, 1) for k, v in rss.items()},
                                       "value": round(rss[hi] / rss[lo], 3), "target": "<= 1.15",
                                       "met": rss[hi] / rss[lo] <= 1.15}
    finally:
        server.stop()
    save(results, out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="ukis-csmask:4b")
    ap.add_argument("--sizes", default="2048,16384")
    ap.add_argument("--p1-size", type=int, default=4096)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--out", default="benchmarks/results/inference.json")
    a = ap.parse_args()
    run(a.model, [int(s) for s in a.sizes.split(",")], a.p1_size, a.repeats, a.batch,
        Path(a.out))


if __name__ == "__main__":
    main()
