"""Job records under ``runs/<run-id>.json``: command, config, timings, status."""

from __future__ import annotations

import json
import logging
import secrets
from datetime import UTC, datetime
from typing import Any

from ._layout import run_key
from ._store import Store

log = logging.getLogger("satchunk.runs")


def new_run_id(kind: str) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{kind}-{stamp}-{secrets.token_hex(3)}"


def write_run(store: Store, record: dict[str, Any]) -> str:
    """Write ``record`` as it is (the caller blanks any credentials in it first)."""
    key = run_key(record["run_id"])
    store.write_bytes(key, json.dumps(record, indent=2, default=str).encode())
    return key


def list_runs(store: Store) -> list[dict[str, Any]]:
    """Every job record, oldest first; one that is not a JSON object (cut short,
    edited) is left out with a warning naming it."""
    out = []
    for key in store.list("runs"):
        if key.endswith(".json"):
            try:
                record = json.loads(store.read_bytes(key))
            except (ValueError, RecursionError):
                record = None
            if not isinstance(record, dict):
                log.warning("job record %s is damaged (not a JSON object): left out; delete "
                            "it", store.url(key))
                continue
            out.append(record)
    return sorted(out, key=lambda r: str(r.get("started", "")))
