"""Inner chunks of satchunk's sharded arrays, read by position, for readers that want
many small pieces fast (training patches).

Each shard's index is read once (a suffix read, crc32c-checked) and kept; the
chunks a call wants from one shard object are one ranged read, checked and
decompressed on the caller's threads (google-crc32c and zstd release the GIL). A
chunk the index marks empty is the fill value, as zarr reads it; a missing shard
object, a short one, or a chunk failing its checksum is a CorruptObjectError naming
the object. Arrays whose codecs are not the ones satchunk writes (sharding over
bytes, zstd, crc32c) are read through zarr instead.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._integrity import _FIX
from .errors import CorruptObjectError, NotFoundError

_EMPTY = np.uint64(2**64 - 1)
Coord = tuple[int, ...]


@dataclass(frozen=True)
class Layout:
    """One array's shape, shard and inner-chunk shapes, dtype and fill value."""

    shape: tuple[int, ...]
    shard: tuple[int, ...]
    chunk: tuple[int, ...]
    dtype: np.dtype
    fill: Any
    direct: bool  # satchunk's codecs: chunks can be read without zarr

    @property
    def per_shard(self) -> tuple[int, ...]:
        return tuple(s // c for s, c in zip(self.shard, self.chunk, strict=True))


def parse_layout(meta: dict[str, Any]) -> Layout:
    """The :class:`Layout` of an array from its ``zarr.json``."""
    shard = tuple(meta["chunk_grid"]["configuration"]["chunk_shape"])
    (codec, *rest) = meta["codecs"]
    conf = codec.get("configuration", {})
    inner = [c["name"] for c in conf.get("codecs", [])]
    index = [c["name"] for c in conf.get("index_codecs", [])]
    little = all(c.get("configuration", {}).get("endian", "little") == "little"
                 for c in conf.get("codecs", []) + conf.get("index_codecs", []) if
                 c["name"] == "bytes")
    direct = (codec["name"] == "sharding_indexed" and not rest and inner == ["bytes", "zstd",
              "crc32c"] and index == ["bytes", "crc32c"] and little
              and conf.get("index_location", "end") == "end"
              and meta.get("chunk_key_encoding", {}).get("configuration", {}).get(
                  "separator", "/") == "/")
    chunk = tuple(conf.get("chunk_shape", shard))
    dtype = np.dtype(meta["data_type"]).newbyteorder("<")
    fill = meta.get("fill_value")
    fill = np.nan if fill == "NaN" else fill
    return Layout(tuple(meta["shape"]), shard, chunk, dtype, fill, direct)


class ChunkReader:
    """Inner chunks of the arrays of the Zarr group at ``key`` in ``store``; the
    ranged reads and decoding run on ``pool``."""

    def __init__(self, store: Any, key: str, pool: Executor) -> None:
        self.store, self.key, self.pool = store, key.rstrip("/"), pool
        self._layouts: dict[str, Layout] = {}
        self._indexes: dict[tuple[str, Coord], np.ndarray] = {}
        self._zarr: Any = None

    def layout(self, array: str) -> Layout:
        if array not in self._layouts:
            meta = json.loads(self.store.read_bytes(f"{self.key}/{array}/zarr.json"))
            self._layouts[array] = parse_layout(meta)
        return self._layouts[array]

    def read(self, array: str, chunks: Sequence[Coord]) -> list[np.ndarray]:
        """The inner chunks of ``array`` at ``chunks`` (inner-chunk grid coordinates),
        each cut to the array's bounds; a chunk asked for twice is read once."""
        lay = self.layout(array)
        if not lay.direct:
            return [self._via_zarr(array, c, lay) for c in chunks]
        by_shard: dict[Coord, list[Coord]] = {}
        for c in dict.fromkeys(tuple(int(v) for v in c) for c in chunks):
            s = tuple(v // n for v, n in zip(c, lay.per_shard, strict=True))
            by_shard.setdefault(s, []).append(c)
        got: dict[Coord, np.ndarray] = {}
        for part in self.pool.map(lambda kv: self._from_shard(array, lay, *kv),
                                  by_shard.items()):
            got.update(part)
        return [got[tuple(int(v) for v in c)] for c in chunks]

    def _shard_key(self, array: str, shard: Coord) -> str:
        return f"{self.key}/{array}/c/" + "/".join(map(str, shard))

    def _from_shard(self, array: str, lay: Layout, shard: Coord, chunks: list[Coord]
                    ) -> dict[Coord, np.ndarray]:
        key = self._shard_key(array, shard)
        index = self._index(array, lay, shard, key)
        where = [tuple(v % n for v, n in zip(c, lay.per_shard, strict=True)) for c in chunks]
        spans = [index[w] for w in where]
        wanted = [(int(o), int(o + n)) for o, n in spans if o != _EMPTY]
        data = iter(self._read(key, wanted) if wanted else [])
        out = {}
        for c, (o, _) in zip(chunks, spans, strict=True):
            full = (np.full(lay.chunk, lay.fill, lay.dtype) if o == _EMPTY
                    else self._decode(next(data), lay, key))
            region = tuple(slice(0, min(n, size - v * n)) for v, n, size in
                           zip(c, lay.chunk, lay.shape, strict=True))
            out[c] = full[region]
        return out

    def _index(self, array: str, lay: Layout, shard: Coord, key: str) -> np.ndarray:
        """The shard's (inner..., 2) table of chunk offsets and sizes."""
        if (array, shard) not in self._indexes:
            n = math.prod(lay.per_shard)
            (raw,) = self._read(key, [(-(16 * n + 4), 0)])
            if len(raw) != 16 * n + 4 or _crc(raw[:-4]) != raw[-4:]:
                raise CorruptObjectError(f"object {self.store.url(key)} is damaged (its shard "
                                         f"index fails its checksum): {_FIX}")
            table = np.frombuffer(raw[:-4], "<u8").reshape(*lay.per_shard, 2)
            self._indexes[(array, shard)] = table
        return self._indexes[(array, shard)]

    def _read(self, key: str, ranges: list[tuple[int, int]]) -> list[bytes]:
        try:
            return self.store.read_ranges(key, ranges)
        except NotFoundError:
            raise CorruptObjectError(f"object {self.store.url(key)} is missing: {_FIX}"
                                     ) from None

    def _decode(self, raw: bytes, lay: Layout, key: str) -> np.ndarray:
        from numcodecs import Zstd

        body = raw[:-4]
        try:
            if len(raw) < 4 or _crc(body) != raw[-4:]:
                raise ValueError("a chunk fails its checksum")
            flat = Zstd().decode(body)
        except (ValueError, RuntimeError) as exc:
            raise CorruptObjectError(f"object {self.store.url(key)} is damaged ({exc}): "
                                     f"{_FIX}") from None
        if len(flat) != math.prod(lay.chunk) * lay.dtype.itemsize:
            raise CorruptObjectError(f"object {self.store.url(key)} is damaged (a chunk "
                                     f"decodes to {len(flat)} bytes): {_FIX}")
        return np.frombuffer(flat, lay.dtype).reshape(lay.chunk)

    def _via_zarr(self, array: str, c: Coord, lay: Layout) -> np.ndarray:
        import zarr

        if self._zarr is None:
            self._zarr = zarr.open_group(self.store.zarr_store(self.key, read_only=True),
                                         mode="r", zarr_format=3)
        region = tuple(slice(v * n, min((v + 1) * n, size)) for v, n, size in
                       zip(c, lay.chunk, lay.shape, strict=True))
        return np.asarray(self._zarr[array][region])


def _crc(data: bytes) -> bytes:
    import google_crc32c

    return google_crc32c.value(data).to_bytes(4, "little")
