"""Dask cluster start-up: a LocalCluster on 127.0.0.1 (one worker per GPU on GPUs), or a
running scheduler."""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator, Sequence
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


def visible_gpus() -> list[str]:
    """The GPUs a local cluster can use, as ids for ``CUDA_VISIBLE_DEVICES``: the
    entries of ``CUDA_VISIBLE_DEVICES`` when it is set and not empty (up to the first
    negative one, where CUDA stops too), else ``0..n-1`` for the devices torch sees,
    else none (no torch, no CUDA build, no driver)."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES", "").strip()
    if listed:
        gpus: list[str] = []
        for entry in (e.strip() for e in listed.split(",")):
            if not entry or entry.startswith("-"):
                break
            gpus.append(entry)
        return gpus
    try:
        import torch
    except ImportError:
        return []
    if not torch.cuda.is_available():
        return []
    return [str(i) for i in range(torch.cuda.device_count())]


def cluster_gpus(client: Any) -> int:
    """How many workers of ``client``'s cluster advertise a ``GPU`` resource (dask-cuda's
    convention: ``dask worker --resources GPU=1``, one worker per GPU)."""
    workers = client.scheduler_info(n_workers=-1)["workers"].values()
    return sum(1 for w in workers if (w.get("resources") or {}).get("GPU", 0) > 0)


def gpu_worker_threads(gpus: int) -> int:
    """Threads of a local GPU worker: the host's cores shared by its GPUs, 2 to 8. The
    tasks on a GPU share its one model; while one computes on the device, the others
    read, decode, encode and write shards (the store side of a GPU's rate takes cores:
    300 MPix/s of 4-band uint16 is 2.4 GB/s to decompress)."""
    return max(2, min(8, (os.cpu_count() or 2) // max(1, gpus)))


def gpu_task_resources(client: Any) -> dict[str, float]:
    """What one GPU task asks of its worker: a share of the worker's ``GPU`` resource (1)
    small enough that each of its threads can run one, so several tasks overlap their
    store I/O with the device's work."""
    workers = client.scheduler_info(n_workers=-1)["workers"].values()
    threads = max((int(w.get("nthreads", 1)) for w in workers
                   if (w.get("resources") or {}).get("GPU", 0) > 0), default=1)
    return {"GPU": 1.0 / threads}


def _worker_spec(threads: int, gpu: str | None, *, scratch: str, memory_limit: int,
                 silence: int) -> dict[str, Any]:
    """A SpecCluster worker: a Nanny process on 127.0.0.1, as LocalCluster starts them;
    with ``gpu``, that GPU only (``CUDA_VISIBLE_DEVICES``, so the worker's ``cuda`` is
    that GPU) and a ``GPU`` resource of 1."""
    from distributed import Nanny

    options: dict[str, Any] = {
        "nthreads": threads, "host": "127.0.0.1", "protocol": "tcp://",
        "local_directory": scratch, "memory_limit": memory_limit,
        "silence_logs": silence, "dashboard": False,
    }
    if gpu is not None:
        # set once the worker process starts, before anything in it touches CUDA;
        # WORKER_ENV stays in pre-spawn-environ (glibc reads it as the process starts)
        options["env"] = {"CUDA_VISIBLE_DEVICES": gpu}
        options["resources"] = {"GPU": 1}
    return {"cls": Nanny, "options": options}


def _spec_cluster(workers: dict[str, dict[str, Any]], silence: int) -> Any:
    """A local cluster of the given worker specs, its scheduler on 127.0.0.1 as
    LocalCluster's (within ``dask.config.set`` of WORKER_ENV and SCHEDULER_CONFIG)."""
    from distributed import Scheduler, SpecCluster

    scheduler = {"cls": Scheduler, "options": {
        "host": "127.0.0.1", "port": 0, "protocol": "tcp://", "dashboard": True,
        "dashboard_address": _dashboard_address()}}
    return SpecCluster(workers=workers, scheduler=scheduler, silence_logs=silence)


@contextmanager
def dask_client(scheduler: str | None = None, workers: int | None = None,
                threads_per_worker: int | None = None, quiet: bool = False,
                gpus: Sequence[str] | None = None) -> Iterator[Any]:
    """A distributed Client; prints the dashboard URL to stderr.

    ``scheduler``: a running cluster's address; else a local cluster on 127.0.0.1 of
    ``workers`` processes (default: up to 2) of ``threads_per_worker`` threads (1). With
    ``gpus`` (ids for ``CUDA_VISIBLE_DEVICES``, say :func:`visible_gpus`, or
    ``[visible_gpus()[N]]`` for ``cuda:N``), one worker process per GPU instead (dask-cuda's
    conventions): each sees only its GPU, as ``cuda:0``, advertises a ``GPU`` resource of
    1 and runs ``threads_per_worker`` threads (default 2); ``workers`` is then ignored.
    """
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
        env = {f"distributed.nanny.pre-spawn-environ.{k}": v for k, v in WORKER_ENV.items()}
        log_level = logging.CRITICAL if silence else level
        # the workers' spill and scratch space: one folder under TMPDIR per job, gone
        # when the job ends, whether it ends well or not
        scratch = tempfile.mkdtemp(prefix="satchunk-dask-")
        try:
            with dask.config.set({**env, **SCHEDULER_CONFIG, "temporary-directory": scratch}):
                if gpus:
                    from distributed.system import MEMORY_LIMIT

                    threads = threads_per_worker or gpu_worker_threads(len(gpus))
                    memory = int(MEMORY_LIMIT / len(gpus))  # LocalCluster's split
                    cluster = _spec_cluster(
                        {f"gpu-{g}": _worker_spec(threads, str(g), scratch=scratch,
                                                  memory_limit=memory, silence=log_level)
                         for g in gpus}, log_level)
                else:
                    n = workers or max(1, min(2, os.cpu_count() or 1))
                    cluster = LocalCluster(n_workers=n,
                                           threads_per_worker=threads_per_worker or 1,
                                           processes=True, host="127.0.0.1",
                                           dashboard_address=_dashboard_address(),
                                           local_directory=scratch, silence_logs=log_level)
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
