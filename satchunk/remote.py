"""Running a whole job (training, evaluation) as one task on a worker of a running Dask
cluster, e.g. the node with the GPU, while this process reports its progress."""

from __future__ import annotations

import queue
import tempfile
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from chunkstore import Credentials, InputError, Store


def on_worker(client: Any, fn: Callable[..., Any], *args: Any,
              on_event: Callable[[Any], None] | None = None, **kwargs: Any) -> Any:
    """``fn(*args, topic=TOPIC, **kwargs)`` on one worker; events it logs to ``TOPIC``
    (``distributed.get_worker().log_event``) reach ``on_event`` here, in this thread."""
    return on_workers(client, fn, args, [kwargs], [None], on_event)[0]


def on_workers(client: Any, fn: Callable[..., Any], args: Sequence[Any],
               each: Sequence[dict[str, Any]], where: Sequence[str | None],
               on_event: Callable[[Any], None] | None = None) -> list[Any]:
    """``fn(*args, topic=TOPIC, **each[i])`` on worker ``where[i]`` (any worker where
    None), all at once; their events reach ``on_event`` here. One failing cancels the
    others."""
    from distributed import wait

    topic = f"satchunk-{uuid.uuid4().hex[:12]}"
    events: queue.SimpleQueue = queue.SimpleQueue()
    client.subscribe_topic(topic, lambda ev: events.put(ev[1]))

    def drain() -> None:
        while not events.empty():
            msg = events.get()
            if on_event is not None:
                on_event(msg)

    futs = [client.submit(fn, *args, topic=topic, pure=False, **kw,
                          **({"workers": [w], "allow_other_workers": False} if w else {}))
            for kw, w in zip(each, where, strict=True)]
    try:
        while not all(f.done() for f in futs) and not any(f.status == "error" for f in futs):
            try:
                wait([f for f in futs if not f.done()], timeout=0.5,
                     return_when="FIRST_COMPLETED")
            except TimeoutError:
                pass
            drain()
        drain()
        for f in futs:
            if f.status == "error":
                f.result()  # raises its error
        return [f.result() for f in futs]
    except BaseException:
        for f in futs:
            f.cancel()
        raise
    finally:
        client.unsubscribe_topic(topic)


def run_remote(scheduler: str, st: Store, record: dict[str, Any], fn: Callable[..., Any],
               *args: Any, quiet: bool = False,
               on_event: Callable[[Any], None] | None = None) -> Any:
    """:func:`on_worker` on the cluster at ``scheduler``; the job record gets its Dask
    dashboard link first."""
    from .cluster import dask_client
    from .records import update_run

    with dask_client(scheduler, quiet=quiet) as client:
        record["dask_dashboard"] = client.dashboard_link
        update_run(st, record)
        return on_worker(client, fn, *args, on_event=on_event)


def train_on_ranks(scheduler: str, st: Store, record: dict[str, Any], ranks: int,
                   device: str, *args: Any, quiet: bool = False,
                   on_event: Callable[[Any], None] | None = None) -> dict[str, Any]:
    """:func:`train_task` as ``ranks`` DDP ranks, one per worker of the cluster at
    ``scheduler`` (its GPU workers for a ``cuda`` device, and for ``auto`` where it has
    enough), rank 0 on the first by address; rank 0's result, with every rank's worker."""
    from training import Ranks

    from .cluster import dask_client
    from .records import update_run

    with dask_client(scheduler, quiet=quiet) as client:
        info = client.scheduler_info()["workers"]
        gpu = sorted(a for a, w in info.items() if w.get("resources", {}).get("GPU"))
        gpus = device.startswith("cuda") or (device == "auto" and len(gpu) >= ranks)
        pick = gpu if gpus else sorted(info)
        if len(pick) < ranks:
            kind = "GPU worker(s) (resource GPU)" if gpus else "worker(s)"
            raise InputError(f"--ranks {ranks}: the cluster at {scheduler} has {len(pick)} "
                             f"{kind}, and each rank needs one of its own: start more or ask "
                             "for fewer")
        pick = pick[:ranks]
        record["dask_dashboard"] = client.dashboard_link
        update_run(st, record)
        host = urlsplit(pick[0]).hostname
        port = client.submit(_free_port, workers=[pick[0]], allow_other_workers=False,
                             pure=False).result()
        each = [{"ranks": Ranks(i, ranks, 0, f"{host}:{port}")} for i in range(ranks)]
        results = on_workers(client, train_task, args, each, pick, on_event)
    return {**results[0], "workers": [r["worker"] for r in results]}


def _free_port() -> int:
    """A TCP port free on this worker's host now (rank 0's meeting point)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("", 0))
        return int(sock.getsockname()[1])


def _publish(topic: str) -> Callable[[dict[str, Any]], None]:
    from distributed import get_worker

    worker = get_worker()
    return lambda row: worker.log_event(topic, row)


def train_task(store: Store, dest: Store, credentials: Credentials, cfg: Any, resume: bool,
               prepared: Any, logdir: str | None, *, topic: str, ranks: Any = None
               ) -> dict[str, Any]:
    """``training.train`` on a worker (one rank of ``ranks``, or the whole run); each
    epoch's row is published to ``topic``. The TensorBoard file goes to ``OUT/logs``
    (and stays in ``logdir`` on the worker only when one is given)."""
    from distributed import get_worker

    from training import Ranks, train

    with tempfile.TemporaryDirectory(prefix="satchunk-tb-") as tmp:
        result = train(store.with_credentials(credentials), dest.with_credentials(credentials),
                       cfg, resume=resume, logdir=Path(logdir or tmp),
                       progress=False, on_epoch=_publish(topic), prepared=prepared,
                       ranks=ranks or Ranks())
    return {**result, "worker": get_worker().address}


def evaluate_task(store: Store, model: Store, credentials: Credentials,
                  collections: list[str] | None, split: str, batch: int, workers: int,
                  device: str = "auto", *, topic: str) -> dict[str, Any]:
    """``training.evaluate_checkpoint`` on a worker."""
    from distributed import get_worker

    from training import evaluate_checkpoint

    result = evaluate_checkpoint(store.with_credentials(credentials),
                                 model.with_credentials(credentials), collections, split,
                                 batch=batch, workers=workers, progress=False,
                                 device=device)
    return {**result, "worker": get_worker().address}
