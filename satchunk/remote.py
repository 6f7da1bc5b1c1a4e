"""Running a whole job (training, evaluation) as one task on a worker of a running Dask
cluster, e.g. the node with the GPU, while this process reports its progress."""

from __future__ import annotations

import queue
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from chunkstore import Credentials, Store


def on_worker(client: Any, fn: Callable[..., Any], *args: Any,
              on_event: Callable[[Any], None] | None = None, **kwargs: Any) -> Any:
    """``fn(*args, topic=TOPIC, **kwargs)`` on one worker; events it logs to ``TOPIC``
    (``distributed.get_worker().log_event``) reach ``on_event`` here, in this thread."""
    from distributed import wait

    topic = f"satchunk-{uuid.uuid4().hex[:12]}"
    events: queue.SimpleQueue = queue.SimpleQueue()
    client.subscribe_topic(topic, lambda ev: events.put(ev[1]))

    def drain() -> None:
        while not events.empty():
            msg = events.get()
            if on_event is not None:
                on_event(msg)

    fut = client.submit(fn, *args, topic=topic, pure=False, **kwargs)
    try:
        while True:
            try:
                wait(fut, timeout=0.5)
                break
            except TimeoutError:
                drain()
        drain()
        return fut.result()
    except BaseException:
        fut.cancel()
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


def _publish(topic: str) -> Callable[[dict[str, Any]], None]:
    from distributed import get_worker

    worker = get_worker()
    return lambda row: worker.log_event(topic, row)


def train_task(store: Store, dest: Store, credentials: Credentials, cfg: Any, resume: bool,
               prepared: Any, logdir: str | None, *, topic: str) -> dict[str, Any]:
    """``training.train`` on a worker; each epoch's row is published to ``topic``. The
    TensorBoard file goes to ``OUT/logs`` (and stays in ``logdir`` on the worker only
    when one is given)."""
    from distributed import get_worker

    from training import train

    with tempfile.TemporaryDirectory(prefix="satchunk-tb-") as tmp:
        result = train(store.with_credentials(credentials), dest.with_credentials(credentials),
                       cfg, resume=resume, logdir=Path(logdir or tmp),
                       progress=False, on_epoch=_publish(topic), prepared=prepared)
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
