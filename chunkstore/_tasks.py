"""One Dask task per shard: run them with a progress bar, and turn a task that
fails, or that keeps killing its worker, into one error that names its shard."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ._store import Credentials
from .errors import InputError, JobError, SatchunkError


@dataclass(frozen=True)
class FirstTasks:
    """Tasks that shard tasks wait for: ``fn(task, credentials)`` each; for every
    shard task, the indices of the first tasks it needs (``needs``) and its ``cost``;
    the first tasks' own ``first_cost``. Costs (say, model calls) order the work: the
    costliest ready task runs first, so the last tasks to finish are short ones."""

    fn: Callable[..., Any]
    tasks: Sequence[Any]
    keys: Sequence[str]
    labels: Sequence[str]
    needs: Sequence[Sequence[int]]
    cost: Sequence[int]
    first_cost: Sequence[int]


def run_shard_tasks(client: Any, fn: Callable[..., Any], tasks: Sequence[Any],
                    credentials: Credentials, keys: Sequence[str], labels: Sequence[str], *,
                    total: int, done: int, desc: str, progress: bool,
                    first: FirstTasks | None = None) -> list[Any]:
    """``fn(task, credentials)`` for every task on the cluster; their results in order.

    With ``first``, its tasks run too, and each shard task starts once the first
    tasks it needs have finished. A task that raises is retried once; a task whose
    worker dies is moved to another worker by Dask, up to
    ``distributed.scheduler.allowed-failures`` times. The first task that fails for
    good cancels the others and raises a :class:`JobError` naming its shard
    (``labels[i]``); an :class:`InputError` (the input's fault) stays one.
    """
    if not tasks:
        return []
    from distributed import as_completed
    from tqdm import tqdm

    pre: list[Any] = []
    if first is None:
        futures = client.map(fn, tasks, credentials=credentials, retries=1, key=list(keys))
        after: dict[str, list[Any]] = {}
    else:
        pre = [client.submit(first.fn, t, credentials=credentials, retries=1, key=k, priority=c)
               for t, k, c in zip(first.tasks, first.keys, first.first_cost, strict=True)]
        # a shard task runs as soon as what it needs is done, before further first
        # tasks: shards finish one after another, not all at the end
        top = max(first.first_cost, default=0) + 1
        futures = [client.submit(_after, fn, t, credentials, [pre[i] for i in need],
                                 retries=1, key=k, priority=top + c)
                   for t, k, need, c in zip(tasks, keys, first.needs, first.cost, strict=True)]
        after = {f.key: [pre[i] for i in need] for f, need in zip(futures, first.needs,
                                                                   strict=True)}
    label_of = {f.key: label for f, label in zip(futures, labels, strict=True)}
    if first is not None:
        label_of |= {f.key: label for f, label in zip(pre, first.labels, strict=True)}
    main = {f.key for f in futures}
    try:
        with tqdm(total=total, initial=done, desc=desc, unit="shard", disable=not progress,
                  leave=True) as bar:
            for fut in as_completed([*pre, *futures]):
                try:
                    fut.result()
                except Exception as exc:  # noqa: BLE001 - named and re-raised
                    # a shard task fails with the first task it needed: name that one
                    cause = next((d for d in after.get(fut.key, ()) if d.status == "error"), fut)
                    raise shard_error(label_of[cause.key],
                                      exc if cause is fut else cause.exception()) from None
                if fut.key in main:
                    bar.update(1)
        return [f.result() for f in futures]
    except BaseException:
        client.cancel([*pre, *futures])
        raise


def _after(fn: Callable[..., Any], task: Any, credentials: Credentials, _needed: list[Any]
           ) -> Any:
    """``fn(task, credentials)``, once the tasks in ``_needed`` (futures) are done."""
    return fn(task, credentials)


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
