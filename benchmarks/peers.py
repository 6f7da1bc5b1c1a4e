"""P6: satchunk against what users would run instead, on the same scene and model
(ukis-csmask's 4-band L1C ONNX UNet, 256 px tiles stepping by 204 px):

- ``sliding``: the whole scene read into memory, a sliding window over it in batches
  of 8 with blended overlaps, the class map written as a GeoTIFF;
- ``windowed``: a single-process rasterio loop over 2048 px windows with their
  context, each class block handed to a writer process through a queue;
- ``csmask``: ``ukis_csmask.mask.CSmask`` on the whole scene, as its README shows.

The peers read a tiled GeoTIFF of the same pixels that satchunk ingested (no JP2
decoding on their side) and run onnxruntime with its default threads; they are timed
from loading the model to the written file, after their imports. satchunk runs
``predict`` from the store with its defaults on a running cluster (2 workers x 1
thread here, the model already loaded in them). Each peer
runs in its own process; its peak RSS is sampled over the process tree at 20 Hz.
Target: satchunk at least 1.3x faster than each peer, and its memory bounded where
theirs grows with the scene. ``agreement`` is the share of pixels where a peer's
class equals satchunk's.

    python -m benchmarks.peers [--size 3072] [--small 1536] [--repeats 3]
    python -m benchmarks.peers PEER SRC.tif OUT.tif SCALE OFFSET   (one peer run)
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

PEERS = ("sliding", "windowed", "csmask")
BANDS = ["blue", "green", "red", "nir"]  # the GeoTIFF's band order: B02, B03, B04, B08
TILE, STEP, START = 256, 204, -51  # ukis-csmask's own 20 % overlap grid
WINDOW = 2048


# ---- the peers: plain code as a user would write it, sharing nothing with satchunk ----

def _model():
    import onnxruntime as ort
    import ukis_csmask

    path = Path(ukis_csmask.__file__).parent / "model_4b_l1c.onnx"
    meta = json.loads(path.with_suffix(".json").read_text())
    mean, std = (np.array(v, dtype=np.float32)[:, None, None]
                 for v in meta["data"]["dataset_statistics"]["img"])
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]), mean, std


def _ramp():
    """Blend weights: sin^2 over the 52 px that neighbouring tiles share."""
    r = np.ones(TILE, dtype=np.float32)
    n = TILE - STEP
    r[:n] = np.sin(np.linspace(0, np.pi / 2, n + 2)[1:-1]) ** 2
    r[-n:] = r[:n][::-1]
    return r[:, None] * r[None, :]


def _classes(sess, x, y0, x0, h, w, batch=8):
    """Class map of rows y0..y0+h, cols x0..x0+w; ``x`` (C, ...) is normalized and
    starts TILE pixels before (y0, x0)."""
    wt = _ramp()
    acc = np.zeros((3, h, w), dtype=np.float32)
    ws = np.zeros((h, w), dtype=np.float32)
    first = lambda a: START - (-(a - TILE + 1 - START) // STEP) * STEP  # noqa: E731
    starts = [(ty, tx) for ty in range(first(y0), y0 + h, STEP)
              for tx in range(first(x0), x0 + w, STEP)]
    for b in range(0, len(starts), batch):
        group = starts[b:b + batch]
        tiles = np.stack([x[:, ty - y0 + TILE:ty - y0 + 2 * TILE, tx - x0 + TILE:tx - x0 + 2 * TILE]
                          for ty, tx in group])
        logits = sess.run(None, {"input": tiles})[0]
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs = e / e.sum(axis=1, keepdims=True)
        for (ty, tx), p in zip(group, probs, strict=True):
            r0, r1 = max(ty, y0), min(ty + TILE, y0 + h)
            c0, c1 = max(tx, x0), min(tx + TILE, x0 + w)
            out = np.s_[r0 - y0:r1 - y0, c0 - x0:c1 - x0]
            inp = np.s_[r0 - ty:r1 - ty, c0 - tx:c1 - tx]
            acc[(slice(None), *out)] += p[(slice(None), *inp)] * wt[inp]
            ws[out] += wt[inp]
    return np.argmax(acc / ws, axis=0).astype(np.uint8)


def _profile(src):
    p = src.profile.copy()
    p.update(count=1, dtype="uint8", compress="deflate", tiled=True, blockxsize=512,
              blockysize=512, nodata=None)
    return p


def sliding(src_path, out_path, scale, offset):
    import rasterio

    sess, mean, std = _model()
    with rasterio.open(src_path) as src:
        img = src.read().astype(np.float32)
        profile = _profile(src)
    img = (img * scale + offset - mean) / std
    x = np.pad(img, ((0, 0), (2 * TILE, 2 * TILE), (2 * TILE, 2 * TILE)), mode="symmetric")
    H, W = img.shape[1:]
    cls = _classes(sess, x[:, TILE:, TILE:], 0, 0, H, W)
    with rasterio.open(out_path, "w", **profile) as dst:
        dst.write(cls, 1)


def _writer(out_path, profile, queue):
    import rasterio
    from rasterio.windows import Window

    with rasterio.open(out_path, "w", **profile) as dst:
        while (msg := queue.get()) is not None:
            (r, c), cls = msg
            dst.write(cls, 1, window=Window(c, r, cls.shape[1], cls.shape[0]))


def windowed(src_path, out_path, scale, offset):
    import multiprocessing as mp

    import rasterio
    from rasterio.windows import Window

    sess, mean, std = _model()
    with rasterio.open(src_path) as src:
        H, W = src.height, src.width
        q = mp.get_context("spawn").Queue(maxsize=2)
        writer = mp.get_context("spawn").Process(target=_writer,
                                                 args=(out_path, _profile(src), q))
        writer.start()
        for r in range(0, H, WINDOW):
            for c in range(0, W, WINDOW):
                h, w = min(WINDOW, H - r), min(WINDOW, W - c)
                ry0, ry1 = max(r - 2 * TILE, 0), min(r + h + 2 * TILE, H)
                cx0, cx1 = max(c - 2 * TILE, 0), min(c + w + 2 * TILE, W)
                block = src.read(window=Window(cx0, ry0, cx1 - cx0, ry1 - ry0))
                block = (block.astype(np.float32) * scale + offset - mean) / std
                block = np.pad(block, ((0, 0), (ry0 - (r - 2 * TILE), r + h + 2 * TILE - ry1),
                                       (cx0 - (c - 2 * TILE), c + w + 2 * TILE - cx1)),
                               mode="symmetric")
                q.put(((r, c), _classes(sess, block[:, TILE:, TILE:], r, c, h, w)))
        q.put(None)
        writer.join()


def csmask(src_path, out_path, scale, offset):
    import rasterio
    from ukis_csmask.mask import CSmask

    with rasterio.open(src_path) as src:
        img = np.moveaxis(src.read().astype(np.float32) * scale + offset, 0, -1)
        profile = _profile(src)
    csm = CSmask(img, band_order=BANDS, product_level="l1c").csm
    with rasterio.open(out_path, "w", **profile) as dst:
        dst.write(csm[:, :, 0], 1)


# ---- the harness ----

def _tree_rss(proc, stop, peak):
    import psutil

    p = psutil.Process(proc.pid)
    while not stop.wait(0.05):
        try:
            procs = [p, *p.children(recursive=True)]
            peak[0] = max(peak[0], sum(c.memory_info().rss for c in procs))
        except psutil.Error:
            pass


def run_peer(peer: str, src: Path, out: Path, scale: float, offset: float) -> tuple[float, float]:
    """(seconds from model load to the written GeoTIFF, peak RSS MB of the peer's
    processes)."""
    stop, peak = threading.Event(), [0]
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks.peers", peer, str(src), str(out),
                             repr(scale), repr(offset)], stdout=subprocess.PIPE, text=True)
    t = threading.Thread(target=_tree_rss, args=(proc, stop, peak), daemon=True)
    t.start()
    stdout, _ = proc.communicate()
    stop.set()
    t.join()
    if proc.returncode:
        raise RuntimeError(f"peer {peer} exited {proc.returncode}")
    return json.loads(stdout.strip().splitlines()[-1])["seconds"], peak[0] / 2**20


def _geotiff(bench, size: int, shard: int) -> Path:
    """The mosaic's four 10 m bands as one tiled GeoTIFF."""
    import rasterio

    folder = Path(bench.mosaic_scene(size, shard, 256).bands[0].path).parent
    out = bench.tmp / f"peer-{size}.tif"
    srcs = [rasterio.open(folder / f"S2_MOSAIC_{size}_{b}.vrt") for b in
            ("B02", "B03", "B04", "B08")]
    profile = {"driver": "GTiff", "count": 4, "dtype": "uint16", "width": size, "height": size,
               "crs": srcs[0].crs, "transform": srcs[0].transform, "tiled": True,
               "blockxsize": 512, "blockysize": 512, "compress": "deflate"}
    with rasterio.open(out, "w", **profile) as dst:
        for i, s in enumerate(srcs, 1):
            dst.write(s.read(1), i)
            s.close()
    return out


def _satchunk(bench, store, item, model: str) -> tuple[float, float, np.ndarray]:
    """Predict once from the store: (wall s, the largest worker's peak RSS MB, class
    map). Each worker holds its own shard, so one worker's peak is what a bigger scene
    could grow; the workers together hold about workers x that."""
    import zarr

    from benchmarks.inference import _fresh
    from benchmarks.ingest import PeakRSS
    from chunkstore import mask_key
    from satchunk import PredictOptions, predict_job

    s = _fresh(store)
    with PeakRSS(bench.client) as m:
        t0 = time.perf_counter()
        (res,) = predict_job(PredictOptions([item], model, "bench"), bench.place(s, "predict"))
        wall = time.perf_counter() - t0
    key = mask_key("bench", item, res["model_id"])
    cls = zarr.open_array(s.zarr_store(f"{key}/class", read_only=True), mode="r")[:]
    return wall, m.max_worker_mb, cls


def measure(bench, size: int, small: int, repeats: int, model: str = "ukis-csmask:4b") -> dict:
    import rasterio

    from chunkstore import read_scene, scene_key

    out: dict = {"model": model, "size": size, "small": small, "repeats": repeats,
                 "satchunk": {}, "peers": {p: {} for p in PEERS}}
    for n, reps in ((small, 1), (size, repeats)):  # shards of ``small``: 1, then 4 of them
        store, item = bench.ingested(n, f"p6-{n}", small, 256)
        info = read_scene(store, scene_key("bench", item))
        scale, offset = info.scale, info.offset
        src = _geotiff(bench, n, small)
        _satchunk(bench, store, item, model)  # warm: the model loaded in every worker
        runs = [_satchunk(bench, store, item, model) for _ in range(reps)]
        ours = runs[-1][2]
        out["satchunk"][str(n)] = {"wall_s": round(statistics.median(r[0] for r in runs), 2),
                                   "peak_rss_mb": round(max(r[1] for r in runs), 1)}
        print(f"P6 {n}^2 satchunk: {out['satchunk'][str(n)]}")
        for peer in PEERS:
            dst = bench.tmp / f"{peer}-{n}.tif"
            res = [run_peer(peer, src, dst, scale, offset) for _ in range(reps)]
            with rasterio.open(dst) as ds:
                agree = float((ds.read(1) == ours).mean())
            out["peers"][peer][str(n)] = {
                "wall_s": round(statistics.median(r[0] for r in res), 2),
                "peak_rss_mb": round(max(r[1] for r in res), 1), "agreement": round(agree, 4)}
            print(f"P6 {n}^2 {peer}: {out['peers'][peer][str(n)]}")
    big, little = str(size), str(small)
    ours = out["satchunk"]
    speed = {p: round(r[big]["wall_s"] / ours[big]["wall_s"], 3) for p, r in out["peers"].items()}
    growth = {p: round(r[big]["peak_rss_mb"] / r[little]["peak_rss_mb"], 3)
              for p, r in out["peers"].items()}
    growth["satchunk"] = round(ours[big]["peak_rss_mb"] / ours[little]["peak_rss_mb"], 3)
    out.update(speedup=speed, rss_growth=growth, value=min(speed.values()),
               target=">= 1.3 faster, bounded memory")
    out["met"] = out["value"] >= 1.3 and growth["satchunk"] <= 1.15
    return out


def main():
    if len(sys.argv) > 1 and sys.argv[1] in PEERS:
        import onnxruntime  # noqa: F401  imports are not timed (satchunk's workers are up)
        import rasterio  # noqa: F401
        import ukis_csmask.mask  # noqa: F401

        peer, src, dst, scale, offset = sys.argv[1:6]
        t0 = time.perf_counter()
        globals()[peer](src, dst, float(scale), float(offset))
        print(json.dumps({"seconds": time.perf_counter() - t0}))
        return
    from benchmarks._results import bench_env, header, save

    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=3072)
    ap.add_argument("--small", type=int, default=1536)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default="benchmarks/results/peers.json")
    a = ap.parse_args()
    with bench_env() as bench:
        results = header() | {"P6": measure(bench, a.size, a.small, a.repeats)}
    save(results, Path(a.out))


if __name__ == "__main__":
    main()
