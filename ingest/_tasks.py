"""Run one Dask task per shard with a progress bar; cancel the rest if one fails."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from chunkstore import Credentials


def run_shard_tasks(client: Any, fn: Callable[..., Any], tasks: Sequence[Any],
                    credentials: Credentials, keys: Sequence[str], *, total: int, done: int,
                    desc: str, progress: bool) -> None:
    """``fn(task, credentials)`` for every task on the cluster (one retry each)."""
    if not tasks:
        return
    from distributed import as_completed
    from tqdm import tqdm

    futures = client.map(fn, tasks, credentials=credentials, retries=1, key=list(keys))
    try:
        with tqdm(total=total, initial=done, desc=desc, unit="shard", disable=not progress,
                  leave=True) as bar:
            for fut in as_completed(futures):
                fut.result()
                bar.update(1)
    except BaseException:
        client.cancel(futures)
        raise
