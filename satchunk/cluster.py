"""Dask cluster start-up: a LocalCluster on 127.0.0.1, or a running scheduler."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from chunkstore import StoreError

# Dask starts workers with MALLOC_TRIM_THRESHOLD_ set, which freezes glibc's mmap
# threshold at 128 KiB: every torch activation is then mmapped and unmapped per layer,
# which halves UNet and SegFormer speed on workers (0.20 against 0.10 s per tile).
# 32 MiB is where glibc's own dynamic threshold stops; memory still goes back to the
# system after every shard (inference/_runner.py trims the heap). The Dockerfile sets
# the same for `dask worker` in compose and Kubernetes.
WORKER_ENV = {"MALLOC_MMAP_THRESHOLD_": "33554432"}


@contextmanager
def dask_client(scheduler: str | None = None, workers: int | None = None,
                threads_per_worker: int = 1, quiet: bool = False) -> Iterator[Any]:
    """A distributed Client; prints the dashboard URL to stderr."""
    import dask
    from distributed import Client, LocalCluster

    for name in ("distributed", "bokeh", "tornado"):
        logging.getLogger(name).setLevel(logging.ERROR)
    if scheduler:
        try:
            client = Client(scheduler, timeout="20s")
        except OSError as exc:
            raise StoreError(f"cannot reach the Dask scheduler {scheduler} ({exc}): start it "
                             "with `dask scheduler` or drop --scheduler") from None
        cluster = None
    else:
        n = workers or max(1, min(2, os.cpu_count() or 1))
        env = {f"distributed.nanny.pre-spawn-environ.{k}": v for k, v in WORKER_ENV.items()}
        with dask.config.set(env):
            cluster = LocalCluster(n_workers=n, threads_per_worker=threads_per_worker,
                                   processes=True, host="127.0.0.1",
                                   dashboard_address="127.0.0.1:8787",
                                   silence_logs=logging.ERROR)
        client = Client(cluster)
    if not quiet:
        print(f"Dask dashboard: {client.dashboard_link}", file=sys.stderr)
    try:
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
