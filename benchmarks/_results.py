"""What every benchmark shares: the run's header, the results file, the embedded S3
server with a local Dask cluster, and mosaics of the real Sentinel-2 crop ingested
into it."""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.mosaic import build_mosaic
from chunkstore import Store, open_store, start_s3_server
from ingest import SceneSource, check_inputs
from satchunk import IngestOptions, Place, dask_client, ingest_job, sample_scenes

COLLECTION = "bench"
ACQUIRED = "2020-01-01T00:00:00Z"


def machine() -> str:
    """'AMD EPYC ... , 2 cores, 24 GB RAM, no GPU' (the CPU as /proc/cpuinfo names it)."""
    import psutil

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = psutil.virtual_memory().total / 2**30
    return f"{cpu}, {os.cpu_count()} cores, {ram:.0f} GB RAM, {gpu_name() or 'no GPU'}"


def gpu_name() -> str | None:
    try:
        import torch

        return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except Exception:
        return None


def header() -> dict[str, Any]:
    return {"date": datetime.now(UTC).isoformat(timespec="seconds"), "machine": machine()}


def fresh_workers(client: Any, timeout: float = 120.0) -> None:
    """Restart every worker and wait until as many new ones have registered.

    ``client.restart()``, which waits for the workers itself, timed out here after 120 s
    in 4 of 6 tries (distributed 2026.8, after an 8192^2 ingest); restarting without
    waiting and watching for new worker addresses, they registered in 1-10 s every time.
    """
    import time

    old = set(client.nthreads())
    client.restart(wait_for_workers=False)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = set(client.nthreads())
        if len(now) >= len(old) and not now & old:
            return
        time.sleep(0.2)
    raise TimeoutError(f"{len(old)} restarted workers did not register in {timeout:.0f} s")


def paired_median(num: list[float], den: list[float]) -> float:
    """Median over runs of each run's own ratio ``num[i] / den[i]``: both sides of a
    ratio come from the same run, so a slow spell on a shared machine moves both."""
    return statistics.median(n / d for n, d in zip(num, den, strict=True))


def save(results: dict, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


@dataclass
class Bench:
    """One embedded S3 server and one local cluster (2 workers x 1 thread by default)."""

    server: Any
    client: Any
    tmp: Path

    def store(self, prefix: str) -> Store:
        env = self.server.env(prefix)
        return open_store(env["SATCHUNK_STORE"], env=env)

    def place(self, store: Store, job: str) -> Place:
        """Where a job runs: ``store`` and this bench's cluster, no progress bars."""
        return Place(store, client=self.client, progress=False, command=("bench", job))

    def mosaic(self, size: int) -> Path:
        """The folder of a ``size``^2 mosaic's band files."""
        return build_mosaic(sample_scenes()["sentinel-2"], self.tmp, size)

    def mosaic_scene(self, size: int, shard: int, chunk: int) -> SceneSource:
        return check_inputs([str(self.mosaic(size))], COLLECTION, shard=shard, chunk=chunk,
                            acquired=ACQUIRED)[0]

    def ingest(self, store: Store, folder: Path, shard: int, chunk: int) -> str:
        """Ingest the mosaic ``folder`` into ``store`` as users do; its item id."""
        opts = IngestOptions([str(folder)], COLLECTION, acquired=ACQUIRED, shard=shard,
                             chunk=chunk)
        return ingest_job(opts, self.place(store, "ingest"))[0]["item"]

    def ingested(self, size: int, prefix: str, shard: int, chunk: int) -> tuple[Store, str]:
        """A ``size``^2 mosaic ingested under ``prefix``; (store, item id)."""
        store = self.store(prefix)
        return store, self.ingest(store, self.mosaic(size), shard, chunk)


@contextmanager
def bench_env(workers: int = 2, threads: int = 1) -> Iterator[Bench]:
    tmp = Path(tempfile.mkdtemp(prefix="satchunk-bench-"))
    server = start_s3_server(tmp / "s3", bucket="bench")
    try:
        with dask_client(workers=workers, threads_per_worker=threads, quiet=True) as client:
            yield Bench(server, client, tmp)
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
