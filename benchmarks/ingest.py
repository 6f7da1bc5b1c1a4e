"""Ingest benchmarks on mosaics of the real Sentinel-2 crop, against the embedded S3 server.

P2-ingest: peak worker RSS ingesting 16384^2 / 2048^2 (target <= 1.2).
P3: ingest MB/s / min(source decode, compression, store write) MB/s on the same
shards with the same workers (target >= 0.7). Medians of --repeats runs.
Each stage also records the machine's busy CPU seconds (workers, S3 server and all);
when every stage is CPU-bound on the same cores, ingest can at best take the sum of
the stages' CPU over the core count, which bounds P3 from above (``cpu_bound_ceiling``).

    python -m benchmarks.ingest [--sizes 2048,16384] [--p3-size 8192] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from benchmarks._results import save
from benchmarks.mosaic import build_mosaic
from chunkstore import open_store, start_s3_server
from ingest import check_inputs, ingest_scenes
from satchunk.cluster import dask_client
from satchunk.demo import sample_scenes

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


class Busy:
    """Busy (non-idle) CPU seconds of the whole machine while the block runs."""

    def __enter__(self):
        import psutil

        self._t0 = psutil.cpu_times()
        self._w0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        import psutil

        t1 = psutil.cpu_times()
        self.wall = time.perf_counter() - self._w0
        t0 = self._t0
        idle = t1.idle - t0.idle + getattr(t1, "iowait", 0) - getattr(t0, "iowait", 0)
        self.cpu = max(sum(t1) - sum(self._t0) - idle, 0.0)


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


def run(sizes, p3_size, repeats, out, threads=1):
    tmp = Path(tempfile.mkdtemp(prefix="satchunk-bench-"))
    server = start_s3_server(tmp / "s3", bucket="bench")
    results = {"date": datetime.now(UTC).isoformat(timespec="seconds"),
               "machine": f"{platform.node()} {os.cpu_count()} cores {platform.machine()}",
               "shard": SHARD, "chunk": CHUNK}
    try:
        with dask_client(workers=2, threads_per_worker=threads, quiet=True) as client:
            # P2: memory against scene size
            rss = {}
            for size in sizes:
                env = server.env(f"p2-{size}")
                store = open_store(env["SATCHUNK_STORE"], env=env)
                folder = build_mosaic(sample_scenes()["sentinel-2"], tmp, size)
                scenes = check_inputs([str(folder)], "bench", shard=SHARD, chunk=CHUNK,
                                      acquired="2020-01-01T00:00:00Z")
                client.restart()
                with PeakRSS(client) as m:
                    t0 = time.perf_counter()
                    ingest_scenes(scenes, "bench", store, client, shard=SHARD, chunk=CHUNK)
                    dt = time.perf_counter() - t0
                rss[size] = m.max_worker_mb
                print(f"ingest {size}^2 x {len(scenes[0].bands)} bands: {dt:.1f} s, "
                      f"peak worker RSS {rss[size]:.0f} MB")
            lo, hi = min(sizes), max(sizes)
            results["P2_ingest"] = {"peak_rss_mb": {str(k): round(v, 1) for k, v in rss.items()},
                                    "value": round(rss[hi] / rss[lo], 3), "target": "<= 1.2",
                                    "met": rss[hi] / rss[lo] <= 1.2}
            # P3: throughput against the slowest stage alone
            folder = build_mosaic(sample_scenes()["sentinel-2"], tmp, p3_size)
            scenes = check_inputs([str(folder)], "bench", shard=SHARD, chunk=CHUNK,
                                  acquired="2020-01-01T00:00:00Z")
            paths = [b.path for b in scenes[0].bands]
            wins = _windows(p3_size)
            raw_mb = p3_size * p3_size * len(paths) * 2 / 2**20
            runs = {"ingest": [], "decode": [], "compress": [], "write": []}
            cpu = {k: [] for k in runs}
            for i in range(repeats):
                env = server.env(f"p3-{i}")
                store = open_store(env["SATCHUNK_STORE"], env=env)
                with Busy() as b:
                    ingest_scenes(scenes, "bench", store, client, shard=SHARD, chunk=CHUNK,
                                  progress=False)
                runs["ingest"].append(raw_mb / b.wall)
                cpu["ingest"].append(b.cpu)
                with Busy() as d:
                    client.gather(client.map(_decode_task, [(paths, w) for w in wins],
                                             pure=False))
                runs["decode"].append(raw_mb / d.wall)
                cpu["decode"].append(d.cpu)
                # compression alone: (decode + compress) less the decode alone
                with Busy() as b:
                    client.gather(client.map(_compress_task, [(paths, w) for w in wins],
                                             pure=False))
                runs["compress"].append(raw_mb / (b.wall - d.wall))
                cpu["compress"].append(b.cpu - d.cpu)
                # store write alone: PUT the bytes the ingest wrote, in objects of shard size
                objs, written = _listed(store, "zarr/bench")
                comp_ratio = written / (raw_mb * 2**20)
                print(f"P3 run {i}: {len(objs)} objects, {written / 2**20:.1f} MB written")
                per = int(raw_mb * 2**20 * comp_ratio / len(wins))
                with Busy() as b:
                    client.gather(client.map(_write_task, [
                        (store.without_credentials(), store.credentials, f"w/{j}", per)
                        for j in range(len(wins))], pure=False))
                runs["write"].append(raw_mb / b.wall)
                cpu["write"].append(b.cpu)
            med = {k: round(statistics.median(v), 1) for k, v in runs.items()}
            limit = min(med["decode"], med["compress"], med["write"])
            cpu_s = {k: round(statistics.median(v), 2) for k, v in cpu.items()}
            cores = os.cpu_count() or 1
            stages_cpu = cpu_s["decode"] + cpu_s["compress"] + cpu_s["write"]
            results["P3"] = {"mb_per_s_raw": med, "busy_cpu_s": cpu_s, "cores": cores,
                             "cpu_bound_ceiling": round(raw_mb / (stages_cpu / cores) / limit, 3),
                             "size": p3_size, "raw_mb": round(raw_mb),
                             "compression_ratio": round(comp_ratio, 3),
                             "value": round(med["ingest"] / limit, 3), "target": ">= 0.7",
                             "met": med["ingest"] / limit >= 0.7}
            print(f"P3 MB/s (raw, median of {repeats}): {med}")
    finally:
        server.stop()
    save(results, out)
    print("\n| id | measured | target | met |\n| --- | --- | --- | --- |")
    for k in ("P2_ingest", "P3"):
        print(f"| {k} | {results[k]['value']} | {results[k]['target']} | {results[k]['met']} |")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="2048,16384")
    ap.add_argument("--p3-size", type=int, default=8192)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="threads per Dask worker")
    ap.add_argument("--out", default="benchmarks/results/ingest.json")
    a = ap.parse_args()
    run([int(s) for s in a.sizes.split(",")], a.p3_size, a.repeats, Path(a.out), a.threads)


if __name__ == "__main__":
    main()
