"""Dask cluster start-up: a LocalCluster on 127.0.0.1, or a running scheduler."""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin

from chunkstore import StoreError

from .logs import redact_all_handlers

# Dask starts workers with MALLOC_TRIM_THRESHOLD_ set, which freezes glibc's mmap
# threshold at 128 KiB: every torch activation is then mmapped and unmapped per layer,
# which halves UNet and SegFormer speed on workers (0.20 against 0.10 s per tile).
# 32 MiB is where glibc's own dynamic threshold stops; memory still goes back to the
# system after every shard (inference/_runner.py trims the heap). The Dockerfile sets
# the same for `dask worker` in compose and Kubernetes.
WORKER_ENV = {"MALLOC_MMAP_THRESHOLD_": "33554432"}
# A worker holds only the tasks it runs: satchunk's tasks take seconds each, so nothing
# is gained by queueing more on a worker, and when a worker dies only the task it was
# running counts towards ``allowed-failures``, so a shard that crashes its workers is
# the one named, not the innocent ones queued behind it. The Dockerfile sets the same.
SCHEDULER_CONFIG = {"distributed.scheduler.worker-saturation": 1.0}


class WorkerLogging(WorkerPlugin):
    """Gives workers the client's log level, credentials blanked (satchunk/logs.py)."""

    name = "satchunk-logging"

    def __init__(self, level: int) -> None:
        self.level = level

    def setup(self, worker: Any) -> None:
        from .logs import configure_logging

        configure_logging(self.level)


def _dashboard_address(port: int = 8787) -> str:
    """127.0.0.1:8787, or any free port when another cluster has it (no warning: the
    link printed is the one to open)."""
    import socket

    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return "127.0.0.1:0"
    return f"127.0.0.1:{port}"


class IgnoreInterrupt(WorkerPlugin):
    """Local workers leave Ctrl-C to the command: a terminal sends SIGINT to the whole
    process group, and the command stops its cluster itself (no worker tracebacks)."""

    name = "satchunk-ignore-interrupt"

    def setup(self, worker: Any) -> None:
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, signal.SIG_IGN)


def quiet_logs(level: int) -> None:
    """Set Dask's, Bokeh's and Tornado's loggers to ``level``, the children that
    distributed configures with levels of their own too (``tornado.application`` would
    otherwise print a traceback of distributed's when Ctrl-C lands inside a call)."""
    roots = ("distributed", "bokeh", "tornado")
    for name in roots:
        logging.getLogger(name).setLevel(level)
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if (isinstance(logger, logging.Logger) and logger.level != logging.NOTSET
                and name.split(".")[0] in roots):
            logger.setLevel(level)


@contextmanager
def dask_client(scheduler: str | None = None, workers: int | None = None,
                threads_per_worker: int = 1, quiet: bool = False) -> Iterator[Any]:
    """A distributed Client; prints the dashboard URL to stderr."""
    import dask
    from distributed import Client, LocalCluster

    redact_all_handlers()  # distributed's own handlers too, now that it is imported
    level = logging.getLogger().getEffectiveLevel()
    # Dask's own errors repeat what the command says in one line (the shard, the cause);
    # at DEBUG every logger speaks (credentials blanked)
    silence = level > logging.DEBUG
    quiet_logs(logging.CRITICAL if silence else level)
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
        # the workers' spill and scratch space: one folder under TMPDIR per job, gone
        # when the job ends, whether it ends well or not
        scratch = tempfile.mkdtemp(prefix="satchunk-dask-")
        try:
            with dask.config.set({**env, **SCHEDULER_CONFIG, "temporary-directory": scratch}):
                cluster = LocalCluster(n_workers=n, threads_per_worker=threads_per_worker,
                                       processes=True, host="127.0.0.1",
                                       dashboard_address=_dashboard_address(),
                                       local_directory=scratch,
                                       silence_logs=logging.CRITICAL if silence else level)
            client = Client(cluster)
        except BaseException:
            shutil.rmtree(scratch, ignore_errors=True)
            raise
    try:
        client.register_plugin(WorkerLogging(level), name=WorkerLogging.name)
        if cluster is not None:
            client.register_plugin(IgnoreInterrupt(), name=IgnoreInterrupt.name)
        if not quiet:
            print(f"Dask dashboard: {client.dashboard_link}", file=sys.stderr)
        yield client
    finally:
        try:
            client.close()
        finally:
            if cluster is not None:
                try:
                    cluster.close()
                finally:
                    shutil.rmtree(scratch, ignore_errors=True)
