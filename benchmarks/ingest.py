"""Ingest benchmarks on mosaics of the real Sentinel-2 crop, against the embedded S3 server.

P2-ingest: peak worker RSS ingesting 16384^2 / 2048^2 (target <= 1.2).
P3: ingest MB/s / min(source decode, compression, store write) MB/s on the same
shards with the same workers (target >= 0.7). Medians of --repeats runs.
Each stage also records the machine's busy CPU seconds (workers, S3 server and all);
when every stage is CPU-bound on the same cores, ingest can at best take the sum of
the stages' CPU over the core count, which bounds P3 from above (``cpu_bound_ceiling``).

    python -m benchmarks.ingest [--sizes 2048,8192,16384] [--p3-size 8192] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
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

SHARD, CHUNK = 2048, 256


class PeakRSS:
    """Samples the summed-per-process peak RSS of the Dask workers at 20 Hz."""

    def __init__(self, client):
        import psutil

        self.procs = [psutil.Process(p) for p in client.run(os.getpid).values()]
        self.peak = {p.pid: 0 for p in self.procs}
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.wait(0.05):
            for p in self.procs:
                try:
                    self.peak[p.pid] = max(self.peak[p.pid], p.memory_info().rss)
                except Exception:
                    pass

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()

    @property
    def max_worker_mb(self) -> float:
        return max(self.peak.values()) / 2**20



def _decode(path_and_window):
    import rasterio
    from rasterio.windows import Window

    paths, (r0, c0, h, w) = path_and_window
    out = []
    for p in paths:
        with rasterio.open(p) as ds:
            out.append(ds.read(1, window=Window(c0, r0, w, h)))
    return np.stack(out)


def _decode_task(arg):
    return int(_decode(arg).nbytes)


def _compress_task(arg):
    import numcodecs  # zstd level 3 + crc32c per inner chunk, as the scene Zarr does
    from google_crc32c import value as crc32c

    block = _decode(arg)
    z = numcodecs.Zstd(level=3)
    n = 0
    for y in range(0, block.shape[1], CHUNK):
        for x in range(0, block.shape[2], CHUNK):
            chunk = np.ascontiguousarray(block[:, y:y + CHUNK, x:x + CHUNK])
            crc32c(z.encode(chunk))
            n += chunk.nbytes
    return n


def _write_task(arg):
    store, creds, key, nbytes = arg
    data = os.urandom(1024) * (nbytes // 1024)
    s = store.with_credentials(creds)
    t0 = time.perf_counter()
    s.write_bytes(key, data)
    return len(data), time.perf_counter() - t0


RAPL = Path("/sys/class/powercap")


def _rapl_uj() -> int | None:
    """Package energy counters summed (microjoules), where the kernel exposes RAPL."""
    files = sorted(RAPL.glob("*-rapl:[0-9]/energy_uj")) if RAPL.is_dir() else []
    try:
        return sum(int(f.read_text()) for f in files) if files else None
    except OSError:
        return None


class Busy:
    """Busy (non-idle) CPU seconds of the whole machine while the block runs, and the
    CPU packages' energy in joules where RAPL is readable (else ``joules`` is None)."""

    def __enter__(self):
        import psutil

        self._t0 = psutil.cpu_times()
        self._e0 = _rapl_uj()
        self._w0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        import psutil

        t1 = psutil.cpu_times()
        e1 = _rapl_uj()
        self.wall = time.perf_counter() - self._w0
        t0 = self._t0
        idle = t1.idle - t0.idle + getattr(t1, "iowait", 0) - getattr(t0, "iowait", 0)
        self.cpu = max(sum(t1) - sum(self._t0) - idle, 0.0)
        self.joules = None if e1 is None or self._e0 is None else (e1 - self._e0) / 1e6


def _listed(store, prefix, tries=10):
    """Objects under ``prefix`` and their total size, retried while the listing is empty.

    One run in several seen on a loaded machine read an empty listing right after
    the ingest; the write stage must not be timed on zero bytes.
    """
    for _ in range(tries):
        objs = store.list(prefix)
        written = sum(store.fs.info(store._path(k))["size"] for k in objs)
        if written:
            return objs, written
        time.sleep(1)
    raise RuntimeError(f"listing {prefix} after the ingest found no bytes")


def _windows(size):
    return [(r, c, min(SHARD, size - r), min(SHARD, size - c))
            for r in range(0, size, SHARD) for c in range(0, size, SHARD)]


def km2(size: int, pixel_m: float = 10.0) -> float:
    return size * size * pixel_m * pixel_m / 1e6


def measure(bench: Bench, sizes: list[int], p3_size: int, repeats: int) -> dict:
    """P2-ingest, P3 and ingest CPU-s/km^2; leaves the P2 scenes in the store under
    ``p2-<size>`` for the inference memory benchmark."""
    client = bench.client
    results: dict = {"shard": SHARD, "chunk": CHUNK}
    # P2: memory against scene size
    rss = {}
    for size in sizes:
        store = bench.store(f"p2-{size}")
        scene = bench.mosaic_scene(size, SHARD, CHUNK)
        folder = Path(scene.bands[0].path).parent
        fresh_workers(client)
        with PeakRSS(client) as m:
            t0 = time.perf_counter()
            bench.ingest(store, folder, SHARD, CHUNK)
            dt = time.perf_counter() - t0
        rss[size] = m.max_worker_mb
        print(f"ingest {size}^2 x {len(scene.bands)} bands: {dt:.1f} s, "
              f"peak worker RSS {rss[size]:.0f} MB")
    lo, hi = min(sizes), max(sizes)
    results["P2_ingest"] = {"peak_rss_mb": {str(k): round(v, 1) for k, v in rss.items()},
                            "value": round(rss[hi] / rss[lo], 3), "target": "<= 1.2",
                            "met": rss[hi] / rss[lo] <= 1.2}
    # P3: throughput against the slowest stage alone
    scene = bench.mosaic_scene(p3_size, SHARD, CHUNK)
    paths = [b.path for b in scene.bands]
    wins = _windows(p3_size)
    raw_mb = p3_size * p3_size * len(paths) * 2 / 2**20
    runs: dict[str, list[float]] = {"ingest": [], "decode": [], "compress": [], "write": []}
    cpu: dict[str, list[float]] = {k: [] for k in runs}
    for i in range(repeats):
        store = bench.store(f"p3-{i}")
        with Busy() as b_ingest:
            bench.ingest(store, Path(paths[0]).parent, SHARD, CHUNK)
        runs["ingest"].append(raw_mb / b_ingest.wall)
        cpu["ingest"].append(b_ingest.cpu)
        with Busy() as d:
            client.gather(client.map(_decode_task, [(paths, w) for w in wins], pure=False))
        runs["decode"].append(raw_mb / d.wall)
        cpu["decode"].append(d.cpu)
        # compression alone: (decode + compress) less the decode alone
        with Busy() as b:
            client.gather(client.map(_compress_task, [(paths, w) for w in wins], pure=False))
        runs["compress"].append(raw_mb / (b.wall - d.wall))
        cpu["compress"].append(b.cpu - d.cpu)
        # store write alone: PUT the bytes the ingest wrote, in objects of shard size
        objs, written = _listed(store, f"zarr/{COLLECTION}")
        comp_ratio = written / (raw_mb * 2**20)
        per = int(raw_mb * 2**20 * comp_ratio / len(wins))
        with Busy() as b:
            client.gather(client.map(_write_task, [
                (store.without_credentials(), store.credentials, f"w/{j}", per)
                for j in range(len(wins))], pure=False))
        runs["write"].append(raw_mb / b.wall)
        cpu["write"].append(b.cpu)
        print(f"P3 run {i}: " + ", ".join(f"{k} {v[-1]:.0f} MB/s" for k, v in runs.items()))
    med = {k: round(statistics.median(v), 1) for k, v in runs.items()}
    limit = min(med["decode"], med["compress"], med["write"])
    p3 = paired_median(runs["ingest"], [min(d, c, w) for d, c, w in
                                        zip(runs["decode"], runs["compress"], runs["write"],
                                            strict=True)])
    cpu_s = {k: round(statistics.median(v), 2) for k, v in cpu.items()}
    cores = os.cpu_count() or 1
    stages_cpu = cpu_s["decode"] + cpu_s["compress"] + cpu_s["write"]
    results["P3"] = {"mb_per_s_raw": med, "busy_cpu_s": cpu_s, "cores": cores,
                     "cpu_bound_ceiling": round(raw_mb / (stages_cpu / cores) / limit, 3),
                     "size": p3_size, "raw_mb": round(raw_mb),
                     "compression_ratio": round(comp_ratio, 3),
                     "value": round(p3, 3), "target": ">= 0.7", "met": p3 >= 0.7}
    results["cpu_s_per_km2"] = round(cpu_s["ingest"] / km2(p3_size), 5)
    results["joules_per_km2"] = (None if b_ingest.joules is None
                                 else round(b_ingest.joules / km2(p3_size), 3))
    return results


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="2048,8192,16384")
    ap.add_argument("--p3-size", type=int, default=8192)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="threads per Dask worker")
    ap.add_argument("--out", default="benchmarks/results/ingest.json")
    a = ap.parse_args()
    with bench_env(threads=a.threads) as bench:
        results = header() | measure(bench, [int(s) for s in a.sizes.split(",")], a.p3_size,
                                     a.repeats)
    save(results, Path(a.out))


if __name__ == "__main__":
    main()
