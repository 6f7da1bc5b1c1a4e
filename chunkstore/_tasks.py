"""One Dask task per shard: run them with a progress bar, and turn a task that
fails, or that keeps killing its worker, into one error that names its shard."""

from __future__ import annotations

import heapq
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ._store import Credentials
from .errors import InputError, JobError, SatchunkError


@dataclass(frozen=True)
class FirstTasks:
    """Tasks that shard tasks wait for: ``fn(task, credentials)`` each, run in their
    order; for every shard task, the indices of the first tasks it needs (``needs``)
    and its ``cost`` (say, model calls): of the shard tasks ready, the costliest runs
    first, so the last to finish are short ones."""

    fn: Callable[..., Any]
    tasks: Sequence[Any]
    keys: Sequence[str]
    labels: Sequence[str]
    needs: Sequence[Sequence[int]]
    cost: Sequence[int]


def run_shard_tasks(client: Any, fn: Callable[..., Any], tasks: Sequence[Any],
                    credentials: Credentials, keys: Sequence[str], labels: Sequence[str], *,
                    total: int, done: int, desc: str, progress: bool,
                    first: FirstTasks | None = None,
                    resources: dict[str, float] | None = None) -> list[Any]:
    """``fn(task, credentials)`` for every task on the cluster; their results in order.

    With ``first``, its tasks run too, and each shard task starts once the first
    tasks it needs have finished. The client hands the cluster one task per worker
    thread at a time, and the next when one finishes (in the order of :class:`_Plan`):
    Dask places a task on a worker as soon as it is submitted, so tasks of unequal
    cost submitted at once queue behind long ones on the same worker. A task that
    raises is retried once; a task whose worker dies is moved to another worker by
    Dask, up to ``distributed.scheduler.allowed-failures`` times. The first task that
    fails for good cancels the others and raises a :class:`JobError` naming its shard
    (``labels[i]``); an :class:`InputError` (the input's fault) stays one.

    With ``resources`` (say ``{"GPU": 0.5}``), every task, first tasks too, runs only on
    a worker that advertises them (``dask worker --resources GPU=1``), as many at once
    on a worker as its threads and resources allow; the tasks wait while no such worker
    is there.

    Each call adds a token of its own to the keys: Dask answers a submit whose key it
    still holds with the held result, so a re-run under the same keys (while the caller
    keeps the error, or another client shares the cluster) would get the error back.
    """
    if not tasks:
        return []
    from distributed import as_completed
    from tqdm import tqdm

    token = secrets.token_hex(4)
    plan = _Plan(fn, tasks, keys, labels, first)
    results: dict[int, Any] = {}
    running: dict[str, tuple[int, Any]] = {}
    finished = as_completed()

    def submit() -> None:
        slots = max(1, _slots(client, resources))
        while len(running) < slots and (j := plan.pop_ready(slots - len(running))) is not None:
            fut = client.submit(plan.fns[j], plan.tasks[j], credentials=credentials,
                                retries=1, key=f"{plan.keys[j]}-{token}",
                                resources=resources)
            running[fut.key] = (j, fut)
            finished.add(fut)

    try:
        with tqdm(total=total, initial=done, desc=desc, unit="shard", disable=not progress,
                  leave=True) as bar:
            submit()
            for fut in finished:
                j, _ = running[fut.key]
                try:
                    result = fut.result()
                except Exception as exc:  # noqa: BLE001 - named and re-raised
                    raise shard_error(plan.labels[j], exc) from None
                del running[fut.key]
                if plan.is_shard(j):
                    results[j] = result
                    bar.update(1)
                plan.done(j)
                submit()
        return [results[j] for j in range(len(tasks))]
    except BaseException:
        client.cancel([f for _, f in running.values()])
        raise


def _slots(client: Any, resources: dict[str, float] | None) -> int:
    """How many tasks the cluster runs at once: its threads, or with ``resources``, on
    each worker that has them, its threads or as many tasks as they cover, the fewer."""
    if not resources:
        return sum(client.nthreads().values())
    slots = 0
    for worker in client.scheduler_info(n_workers=-1)["workers"].values():
        have = worker.get("resources") or {}
        fits = min(int(have.get(r, 0) / need + 1e-9) if need > 0 else worker["nthreads"]
                   for r, need in resources.items())
        slots += min(worker["nthreads"], fits)
    return slots


class _Plan:
    """The jobs of :func:`run_shard_tasks`: shard tasks ``0..n-1``, then first tasks;
    which are ready and which become ready as others finish.

    The next job is the costliest ready shard task while more shard tasks are ready
    than there are slots to fill, else the next first task in order, else a shard
    task. Shards then finish one after another, and the first tasks that unlock the
    last shards are done before a worker would wait for them.
    """

    def __init__(self, fn: Callable[..., Any], tasks: Sequence[Any], keys: Sequence[str],
                 labels: Sequence[str], first: FirstTasks | None) -> None:
        n = self.n = len(tasks)
        first = first or FirstTasks(fn, (), (), (), [()] * n, [0] * n)
        self.fns = [fn] * n + [first.fn] * len(first.tasks)
        self.tasks = [*tasks, *first.tasks]
        self.keys = [*keys, *first.keys]
        self.labels = [*labels, *first.labels]
        self.cost = list(first.cost)
        self.waiting = {i: {n + k for k in need} for i, need in enumerate(first.needs) if need}
        self.dependents: dict[int, list[int]] = {}
        for i, need in self.waiting.items():
            for k in need:
                self.dependents.setdefault(k, []).append(i)
        self._shards = [(-self.cost[i], i) for i in range(n) if i not in self.waiting]
        heapq.heapify(self._shards)
        self._first = list(range(len(self.tasks) - 1, n - 1, -1))  # popped from the end

    def is_shard(self, j: int) -> bool:
        return j < self.n

    def pop_ready(self, slots: int) -> int | None:
        """The next job to hand out, with ``slots`` still to fill; None if none is ready."""
        if self._shards and (len(self._shards) > slots or not self._first):
            return heapq.heappop(self._shards)[1]
        if self._first:
            return self._first.pop()
        return None

    def done(self, j: int) -> None:
        for i in self.dependents.pop(j, ()):
            self.waiting[i].discard(j)
            if not self.waiting[i]:
                del self.waiting[i]
                heapq.heappush(self._shards, (-self.cost[i], i))


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
