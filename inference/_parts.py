"""Pieces of a prediction in progress: the blended probabilities that the tiles one
shard's task computes hand to a neighbouring shard's task.

Each piece is one object under ``scratch/<mask key>/``: a header (magic, classes,
the pixel rectangle), float32 little-endian values, and a crc32 of both, so a piece
cut short or altered is an error naming its key, never data. A job deletes its
pieces once its mask is committed; a job that stops leaves them for its re-run to
overwrite.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

from chunkstore import CorruptObjectError, Store

_MAGIC = b"SCP1"
_HEAD = struct.Struct("<4s5q")  # magic, classes, y0, y1, x0, x1


def parts_prefix(mask_key: str) -> str:
    """Where the pieces of the mask at ``mask_key`` (built by ``mask_key()``) live."""
    return f"scratch/{mask_key}"


def part_key(mask_key: str, owner: tuple[int, int], group: str, target: tuple[int, int]) -> str:
    if group not in ("x", "y"):
        raise ValueError(f"piece group {group!r} is not 'x' or 'y'")
    return (f"{parts_prefix(mask_key)}/{int(owner[0])}.{int(owner[1])}.{group}/"
            f"{int(target[0])}.{int(target[1])}")


def write_part(store: Store, key: str, rect: tuple[int, int, int, int],
               values: np.ndarray) -> None:
    """``values`` (K, y1 - y0, x1 - x0) over ``rect`` = (y0, y1, x0, x1)."""
    y0, y1, x0, x1 = rect
    if values.shape[1:] != (y1 - y0, x1 - x0):
        raise ValueError(f"piece {key}: values {values.shape} do not cover {rect}")
    body = _HEAD.pack(_MAGIC, values.shape[0], y0, y1, x0, x1) + \
        np.ascontiguousarray(values, dtype="<f4").tobytes()
    store.write_bytes(key, body + struct.pack("<I", zlib.crc32(body)))


def read_part(store: Store, key: str, rect: tuple[int, int, int, int],
              classes: int) -> np.ndarray:
    """The piece at ``key``, which must cover ``rect`` with ``classes`` values a pixel."""
    data = store.read_bytes(key)
    y0, y1, x0, x1 = rect
    size = _HEAD.size + 4 * classes * (y1 - y0) * (x1 - x0) + 4
    fault = None
    if len(data) != size:
        fault = f"{len(data)} bytes where {size} were written"
    elif zlib.crc32(data[:-4]) != struct.unpack("<I", data[-4:])[0]:
        fault = "checksum mismatch"
    elif _HEAD.unpack(data[:_HEAD.size]) != (_MAGIC, classes, y0, y1, x0, x1):
        fault = "it covers other pixels than this job's"
    if fault:
        raise CorruptObjectError(f"object {store.url(key)} is damaged ({fault}): re-run the "
                                 "predict job, which rewrites it")
    return np.frombuffer(data, dtype="<f4", count=classes * (y1 - y0) * (x1 - x0),
                         offset=_HEAD.size).reshape(classes, y1 - y0, x1 - x0)
