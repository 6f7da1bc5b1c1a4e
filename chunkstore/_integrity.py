"""Damaged objects are errors that name their key, never data.

Every array satchunk writes is sharded with a crc32c-checked shard index and
crc32c-checked inner chunks, and every writer writes whole shards (empty ones
included). So a shard object that is empty, cut short or altered is damage:
zarr reports a cut or altered one as a checksum mismatch (without the key), and
reads an empty or missing one as fill values. :func:`checked_store` refuses empty
chunk objects, and missing shard objects when it reads (and makes zarr's transport
failures one-line store errors), and :func:`use_naming_pipeline` makes a checksum
or decompression failure an error naming the damaged object.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ._layout import COORDS
from .errors import CorruptObjectError

_FIX = ("delete it and re-run the job that wrote it (ingest, label or predict): the re-run "
        "rewrites missing shards")


def checked_store(zarr_store: Any, url: str, errors: Callable[[str], Any]) -> Any:
    """``zarr_store`` (rooted at ``url``) whose failures are one-line store errors
    (``errors(action)`` is the store's error map) and which refuses empty chunk
    objects."""
    from zarr.storage import WrapperStore

    class CheckedStore(WrapperStore):  # type: ignore[type-arg]
        root_url = url.rstrip("/")  # what NamingPipeline names a damaged object by

        def _with_store(self, store: Any) -> Any:
            return CheckedStore(store)

        async def get(self, key: str, prototype: Any, byte_range: Any = None) -> Any:
            with errors(f"read {key}"):
                buf = await self._store.get(key, prototype, byte_range)
            if buf is not None and len(buf) == 0 and _is_chunk(key):
                raise CorruptObjectError(f"object {url.rstrip('/')}/{key} is empty: {_FIX}")
            if buf is None and self.read_only and _is_shard(f"{url.rstrip('/')}/{key}"):
                raise CorruptObjectError(f"object {url.rstrip('/')}/{key} is missing: {_FIX}")
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


def _is_shard(url: str) -> bool:
    """Whether ``url`` names a shard object, which every writer writes (coordinates
    may leave a chunk equal to the fill value out)."""
    array, sep, _ = url.rpartition("/c/")
    return bool(sep) and array.rsplit("/", 1)[-1] not in COORDS


def _naming_pipeline() -> type:
    from zarr.core.codec_pipeline import BatchedCodecPipeline

    class NamingPipeline(BatchedCodecPipeline):
        """zarr's codec pipeline, except that a chunk object failing its checksum or
        its decompression read from a satchunk store is a :class:`CorruptObjectError`
        naming that object (zarr's own error names none). Only a failing read costs
        more: the batch is read again one object at a time to find it."""

        async def read_batch(self, batch_info: Any, out: Any, drop_axes: tuple[int, ...] = ()
                             ) -> None:
            batch_info = list(batch_info)
            try:
                await super().read_batch(batch_info, out, drop_axes)
                return
            except CorruptObjectError:
                raise
            except Exception as exc:
                if not _is_damage(exc):
                    raise
                first = exc
            for item in batch_info:
                root = getattr(getattr(item[0], "store", None), "root_url", None)
                if root is None:  # inside a shard, or not a satchunk store: the caller names it
                    raise first
                try:
                    await super().read_batch([item], out, drop_axes)
                except Exception as exc:
                    if _is_damage(exc):
                        raise CorruptObjectError(f"object {root}/{item[0].path} is damaged "
                                                 f"({_first_line(exc)}): {_FIX}") from None
                    raise
            raise first

    return NamingPipeline


_PIPELINE: list[str] = []  # its registered name, once registered in this process


def use_naming_pipeline() -> None:
    """Make zarr read through :class:`NamingPipeline` in this process, unless it was
    told to use a pipeline of its own."""
    import zarr

    if _PIPELINE and zarr.config.get("codec_pipeline.path") == _PIPELINE[0]:
        return
    if zarr.config.get("codec_pipeline.path") != "zarr.core.codec_pipeline.BatchedCodecPipeline":
        return
    from zarr.registry import register_pipeline

    if not _PIPELINE:
        pipeline = _naming_pipeline()
        register_pipeline(pipeline)
        _PIPELINE.append(f"{pipeline.__module__}.{pipeline.__qualname__}")
    zarr.config.set({"codec_pipeline.path": _PIPELINE[0]})


def _is_damage(exc: BaseException) -> bool:
    text = str(exc).lower()
    return isinstance(exc, ValueError | RuntimeError) and any(
        w in text for w in ("checksum", "zstd", "decompress", "corrupt", "unexpected end"))


def _first_line(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:120]
