"""What a job left behind, for the fault tests: the objects under an output key, and
the lines a user reads on stderr once progress bars and Dask's banners are set aside."""

from __future__ import annotations

import re

_PROGRESS = re.compile(r"\d+/\d+ \[|shard/s")  # tqdm bars


def objects(store, key):
    """{relative key: bytes} of every object under ``key``."""
    return {k[len(key) + 1:]: store.read_bytes(k) for k in store.list(key)}


def chunks(objects):
    """The chunk (shard) objects of :func:`objects`, metadata left out."""
    return {k: v for k, v in objects.items() if "/c/" in k}


def error_lines(stderr):
    """The non-blank stderr lines that are neither progress nor INFO/dashboard banners."""
    return [x for x in stderr.strip().splitlines() if x.strip()
            and not x.startswith(("INFO", "Dask")) and not _PROGRESS.search(x)]


def written(store, key):
    """How many chunk (shard) objects are under ``key`` so far."""
    return sum("/c/" in k for k in store.list(key))
