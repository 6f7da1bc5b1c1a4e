"""Shard grid arithmetic. Pure: no I/O.

One shard = one Dask block = one object in the store; inner chunks are the
training patches. Edge shards are smaller where the scene ends.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from .errors import InputError


@dataclass(frozen=True)
class ShardGrid:
    height: int
    width: int
    shard: int = 2048
    chunk: int = 256

    def __post_init__(self) -> None:
        if self.height <= 0 or self.width <= 0:
            raise InputError(f"scene has an empty grid ({self.height} x {self.width} pixels)")
        if self.chunk <= 0 or self.shard <= 0 or self.shard % self.chunk:
            raise InputError(
                f"--shard {self.shard} must be a positive multiple of --chunk {self.chunk}"
            )

    @property
    def shape(self) -> tuple[int, int]:
        return self.height, self.width

    @property
    def n_shards(self) -> tuple[int, int]:
        return -(-self.height // self.shard), -(-self.width // self.shard)

    @property
    def inner_per_shard(self) -> int:
        return self.shard // self.chunk

    def shards(self) -> Iterator[tuple[int, int]]:
        ny, nx = self.n_shards
        for sy in range(ny):
            for sx in range(nx):
                yield sy, sx

    def window(self, sy: int, sx: int) -> tuple[int, int, int, int]:
        """(row_off, col_off, height, width) of shard (sy, sx) in pixels."""
        ny, nx = self.n_shards
        if not (0 <= sy < ny and 0 <= sx < nx):
            raise IndexError(f"shard ({sy}, {sx}) outside a {ny} x {nx} grid")
        r0, c0 = sy * self.shard, sx * self.shard
        return r0, c0, min(self.shard, self.height - r0), min(self.shard, self.width - c0)

    def dask_chunks(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Chunks along y and x for a Dask array aligned with the shards."""
        ny, nx = self.n_shards
        ys = tuple(self.window(i, 0)[2] for i in range(ny))
        xs = tuple(self.window(0, j)[3] for j in range(nx))
        return ys, xs
