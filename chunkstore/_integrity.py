"""Damaged objects are errors that name their key, never data.

Every array satchunk writes is sharded with a crc32c-checked shard index and
crc32c-checked inner chunks, and every writer writes whole shards (empty ones
included). So a shard object that is empty, cut short or altered is damage:
zarr reports a cut or altered one as a checksum mismatch (without the key), and
reads an empty one as fill values. :func:`checked_store` refuses empty chunk
objects (and makes zarr's transport failures one-line store errors), and
:func:`read_checked` turns a checksum failure into an error naming the damaged
object.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import numpy as np

from .errors import CorruptObjectError

_FIX = "delete it and re-run the job that wrote it (ingest, label or predict) to rewrite it"


def checked_store(zarr_store: Any, url: str, errors: Callable[[str], Any]) -> Any:
    """``zarr_store`` (rooted at ``url``) whose failures are one-line store errors
    (``errors(action)`` is the store's error map) and which refuses empty chunk
    objects."""
    from zarr.storage import WrapperStore

    class CheckedStore(WrapperStore):  # type: ignore[type-arg]
        def _with_store(self, store: Any) -> Any:
            return CheckedStore(store)

        async def get(self, key: str, prototype: Any, byte_range: Any = None) -> Any:
            with errors(f"read {key}"):
                buf = await self._store.get(key, prototype, byte_range)
            if buf is not None and len(buf) == 0 and _is_chunk(key):
                raise CorruptObjectError(f"object {url.rstrip('/')}/{key} is empty: {_FIX}")
            return buf

        async def get_partial_values(self, prototype: Any, key_ranges: Any) -> Any:
            with errors("read parts of objects"):
                return await self._store.get_partial_values(prototype, key_ranges)

        async def set(self, key: str, value: Any) -> None:
            with errors(f"write {key}"):
                await self._store.set(key, value)

        async def delete(self, key: str) -> None:
            with errors(f"delete {key}"):
                await self._store.delete(key)

        async def exists(self, key: str) -> bool:
            with errors(f"look up {key}"):
                return bool(await self._store.exists(key))

    return CheckedStore(zarr_store)


def _is_chunk(key: str) -> bool:
    return key.startswith("c/") or "/c/" in key


def read_checked(array: Any, url: str, selection: tuple[slice, ...]) -> np.ndarray:
    """``array[selection]`` (plain slices) of the zarr array at ``url``; a shard object
    failing its checksum raises :class:`CorruptObjectError` naming it."""
    try:
        return np.asarray(array[selection])
    except CorruptObjectError:
        raise
    except Exception as exc:
        if not _is_damage(exc):
            raise
        key = _damaged_shard(array, selection) or "(one of the shards read)"
        raise CorruptObjectError(f"object {url.rstrip('/')}/{key} is damaged "
                                 f"({_first_line(exc)}): {_FIX}") from None


def _is_damage(exc: BaseException) -> bool:
    text = str(exc).lower()
    return isinstance(exc, ValueError | RuntimeError) and any(
        w in text for w in ("checksum", "zstd", "decompress", "corrupt", "unexpected end"))


def _first_line(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:120]


def _damaged_shard(array: Any, selection: tuple[slice, ...]) -> str | None:
    """Key (under the array) of the first shard object under ``selection`` that fails
    when read on its own."""
    shards = array.shards or array.chunks
    bounds = [sel.indices(size)[:2] for sel, size in zip(selection, array.shape, strict=True)]
    ranges = [range(a // n, max(b - 1, a) // n + 1)
              for (a, b), n in zip(bounds, shards, strict=True)]
    for idx in itertools.product(*ranges):
        part = tuple(slice(max(i * n, a), min((i + 1) * n, b))
                     for i, n, (a, b) in zip(idx, shards, bounds, strict=True))
        try:
            array[part]
        except Exception as exc:
            if _is_damage(exc):
                return "c/" + "/".join(str(i) for i in idx)
            raise
    return None
