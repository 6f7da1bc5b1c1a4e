"""Job records as the runs page shows them: subject, duration, throughput (pure)."""

from __future__ import annotations

import statistics
from typing import Any


def items_of(record: dict[str, Any]) -> list[dict[str, Any]]:
    got = record.get("items")
    return got if isinstance(got, list) else []


def subject(record: dict[str, Any]) -> str:
    """What the job worked on, in a few words."""
    cfg = record.get("config", {})
    kind = record.get("kind")
    if kind in ("ingest", "label", "predict"):
        names = [f"{i.get('collection')}/{i.get('item')}" for i in items_of(record)]
        names = names or [str(p) for p in cfg.get("items") or cfg.get("paths") or []]
        what = ", ".join(names[:3]) + (f" (+{len(names) - 3})" if len(names) > 3 else "")
        model = cfg.get("model") or cfg.get("from")
        return f"{what} [{model}]" if model else what
    if kind == "train":
        return f"{cfg.get('model')} on {', '.join(cfg.get('collections') or [])} -> " \
               f"{cfg.get('out', '')}"
    if kind == "evaluate":
        return f"{cfg.get('model')} ({cfg.get('split')})"
    return f"{cfg.get('item', '')} {cfg.get('model_id', '')} -> {cfg.get('out', '')}".strip()


def throughput(record: dict[str, Any]) -> str:
    """Work per second of the job, in the unit that fits its kind."""
    seconds = record.get("seconds") or 0
    kind = record.get("kind")
    if kind in ("ingest", "label", "predict"):
        shards = pixels = 0.0
        for i in items_of(record):
            n, written = i.get("shards") or 0, i.get("written_shards") or 0
            shape = i.get("shape") or []
            if kind == "ingest" and len(shape) == 3 and n:
                pixels += shape[1] * shape[2] * written / n
            shards += written
        if not seconds or not shards:
            return "-"
        rate = f"{shards / seconds:.2f} shards/s"
        return f"{pixels / 1e6 / seconds:.2f} Mpx/s, {rate}" if pixels else rate
    if kind == "train":
        rates = [r["patches_per_second"] for r in history(record) if r.get("patches_per_second")]
        return f"{statistics.median(rates):.1f} patches/s" if rates else "-"
    result = record.get("result") or {}
    if kind == "evaluate" and result.get("pixels") and seconds:
        return f"{result['pixels'] / 1e6 / seconds:.2f} Mpx/s"
    if kind == "export" and result.get("bytes") and seconds:
        return f"{result['bytes'] / 1e6 / seconds:.1f} MB/s"
    return "-"


def history(record: dict[str, Any]) -> list[dict[str, Any]]:
    """A training run's epochs: from its result when finished, else as published live."""
    result = record.get("result")
    if isinstance(result, dict) and result.get("history"):
        return list(result["history"])
    return list(record.get("history") or [])


def run_row(record: dict[str, Any]) -> dict[str, Any]:
    seconds = record.get("seconds")
    return {
        "run_id": record.get("run_id", "?"), "kind": record.get("kind", "?"),
        "status": record.get("status", "?"), "started": (record.get("started") or "")[:19],
        "duration": "-" if seconds is None else duration(seconds),
        "throughput": throughput(record), "subject": subject(record),
        "dask": record.get("dask_dashboard") if record.get("status") == "running" else None,
        "error": record.get("error"),
    }


def duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    m, s = divmod(int(round(seconds)), 60)
    return f"{m} min {s:02d} s" if m < 60 else f"{m // 60} h {m % 60:02d} min"
