"""Write a benchmark's results JSON and print it."""

from __future__ import annotations

import json
from pathlib import Path


def save(results: dict, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
