"""Job records under ``runs/<run-id>.json``: command, config, timings, status."""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime
from typing import Any

from ._layout import run_key
from ._store import Store


def new_run_id(kind: str) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{kind}-{stamp}-{secrets.token_hex(3)}"


def write_run(store: Store, record: dict[str, Any]) -> str:
    """Write ``record`` as it is (the caller blanks any credentials in it first)."""
    key = run_key(record["run_id"])
    store.write_bytes(key, json.dumps(record, indent=2, default=str).encode())
    return key


def list_runs(store: Store) -> list[dict[str, Any]]:
    out = []
    for key in store.list("runs"):
        if key.endswith(".json"):
            out.append(json.loads(store.read_bytes(key)))
    return sorted(out, key=lambda r: r.get("started", ""))
