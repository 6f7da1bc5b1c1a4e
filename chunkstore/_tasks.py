"""One Dask task per shard: run them with a progress bar, and turn a task that
fails, or that keeps killing its worker, into one error that names its shard."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ._store import Credentials
from .errors import InputError, JobError, SatchunkError


def run_shard_tasks(client: Any, fn: Callable[..., Any], tasks: Sequence[Any],
                    credentials: Credentials, keys: Sequence[str], labels: Sequence[str], *,
                    total: int, done: int, desc: str, progress: bool) -> list[Any]:
    """``fn(task, credentials)`` for every task on the cluster; their results in order.

    A task that raises is retried once; a task whose worker dies is moved to another
    worker by Dask, up to ``distributed.scheduler.allowed-failures`` times. The first
    task that fails for good cancels the others and raises a :class:`JobError`
    naming its shard (``labels[i]``); an :class:`InputError` (the input's fault) stays one.
    """
    if not tasks:
        return []
    from distributed import as_completed
    from tqdm import tqdm

    futures = client.map(fn, tasks, credentials=credentials, retries=1, key=list(keys))
    label_of = {f.key: label for f, label in zip(futures, labels, strict=True)}
    try:
        with tqdm(total=total, initial=done, desc=desc, unit="shard", disable=not progress,
                  leave=True) as bar:
            for fut in as_completed(futures):
                try:
                    fut.result()
                except Exception as exc:  # noqa: BLE001 - named and re-raised
                    raise shard_error(label_of[fut.key], exc) from None
                bar.update(1)
        return [f.result() for f in futures]
    except BaseException:
        client.cancel(futures)
        raise


def shard_error(label: str, exc: BaseException) -> SatchunkError:
    """One line naming the shard and what went wrong with it."""
    from distributed import KilledWorker

    if isinstance(exc, KilledWorker):
        import dask

        tries = int(dask.config.get("distributed.scheduler.allowed-failures")) + 1
        return JobError(
            f"{label} killed the worker running it {tries} times (out of memory, a crash in "
            "a native library, or the process was killed): nothing of it was committed; see "
            "the worker logs, fix the cause and re-run")
    text = str(exc).splitlines()[0] if str(exc) else ""
    if isinstance(exc, InputError):  # the input's fault, found while reading it: exit 2
        return InputError(f"{label}: {text}")
    if isinstance(exc, SatchunkError):
        err = JobError(f"{label}: {text}")
        err.exit_code = exc.exit_code
        return err
    return JobError(f"{label} failed: {type(exc).__name__}: {text}".rstrip(": "))
