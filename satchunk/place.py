"""Where a job runs: the store and the Dask cluster, given once to every job function."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from chunkstore import Store, open_store

from .records import run_job


@dataclass(frozen=True)
class Place:
    """Where a job runs: the store (a URI, or a :class:`~chunkstore.Store` already open)
    and the Dask cluster (a running client, a scheduler address, or a local cluster)."""

    store: Store | str | None = None   # None: SATCHUNK_STORE
    endpoint_url: str | None = None    # None: AWS_ENDPOINT_URL
    scheduler: str | None = None       # tcp://HOST:8786; None: a local cluster per job
    client: Any = None                 # a running distributed.Client to use instead
    progress: bool = True              # progress bars and the dashboard line
    command: tuple[str, ...] | None = None  # recorded in the job record (default: argv)

    def open(self) -> Store:
        """The store, opened but not yet checked."""
        if isinstance(self.store, Store):
            return self.store
        return open_store(self.store, self.endpoint_url)

    def checked(self) -> Store:
        """The store, opened and checked (reachable, the bucket exists)."""
        st = self.open()
        st.check()
        return st

    @property
    def local(self) -> bool:
        """The job starts a cluster of its own on this machine."""
        return self.client is None and self.scheduler is None

    @contextmanager
    def cluster(self, gpus: list[str] | None = None) -> Iterator[Any]:
        """The Dask client: the one given, else a cluster for this job alone (with
        ``gpus``: one worker per GPU id, see :func:`~satchunk.cluster.dask_client`)."""
        if self.client is not None:
            yield self.client
            return
        from .cluster import dask_client

        with dask_client(self.scheduler, quiet=not self.progress, gpus=gpus) as client:
            yield client

    def record(self, st: Store, kind: str, config: dict[str, Any],
               work: Callable[[dict[str, Any]], Any], **kwargs: Any) -> Any:
        """``work`` under a job record of ``kind`` (see :func:`~satchunk.records.run_job`)."""
        return run_job(st, kind, config, work, command=list(self.command or []) or None,
                       **kwargs)


DEFAULT_PLACE = Place()  # SATCHUNK_STORE and AWS_* variables, a local cluster per job
