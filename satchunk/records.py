"""Job records: every job writes ``runs/<run-id>.json`` when it starts (status
``running``, with the Dask dashboard link), may update it while it runs, and
rewrites it when it ends (``succeeded`` or ``failed`` with the error's first line)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from chunkstore import InputError, SatchunkError, Store, new_run_id, run_key, write_run

from .redact import redact_record, secrets_of


def run_job(st: Store, kind: str, config: dict[str, Any],
            work: Callable[[dict[str, Any]], Any], *, client: Any = None,
            key: str = "result", command: list[str] | None = None) -> Any:
    """Run ``work(record)`` under a job record of ``kind``; its result goes under ``key``.

    ``work`` may change ``record`` and call :func:`update_run` to publish progress. A
    user error (bad input) leaves no record.
    """
    record: dict[str, Any] = {
        "run_id": new_run_id(kind), "kind": kind, "command": command or sys.argv[1:] or [kind],
        "config": config, "store": st.uri, "started": _now(), "status": "running",
    }
    if client is not None:
        record["dask_dashboard"] = client.dashboard_link
    t0 = time.perf_counter()
    record["_t0"] = t0
    update_run(st, record)
    try:
        result = work(record)
    except InputError:
        _forget(st, record)
        raise
    except BaseException as exc:
        _finish(st, record, exc)
        raise
    record[key] = result
    _finish(st, record)
    return result


def update_run(st: Store, record: dict[str, Any]) -> None:
    """Write the record as it stands (with ``updated`` and ``seconds`` so far), with the
    store's credentials (and any signature) blanked in it."""
    record["updated"] = _now()
    record["seconds"] = round(time.perf_counter() - record["_t0"], 3)
    public = {k: v for k, v in record.items() if not k.startswith("_")}
    write_run(st, redact_record(public, secrets_of(st.credentials)))


def _finish(st: Store, record: dict[str, Any], exc: BaseException | None = None) -> None:
    """Write the record as succeeded, or as failed with the first line of ``exc``
    (best effort then: the store may be what failed)."""
    record["finished"] = _now()
    if exc is None:
        record["status"] = "succeeded"
        update_run(st, record)
        return
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    record.update(status="interrupted" if isinstance(exc, KeyboardInterrupt) else "failed",
                  error=text)
    try:
        update_run(st, record)
    except SatchunkError:
        pass


def _forget(st: Store, record: dict[str, Any]) -> None:
    try:
        st.delete(run_key(record["run_id"]))
    except SatchunkError:
        pass


def _now() -> str:
    return datetime.now(UTC).isoformat()
