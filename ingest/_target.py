"""Raster grids: a source file's grid, the target grid of a scene, one shard window
of it, and the kernel for each band. Pure: no I/O."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from chunkstore import InputError

Transform = tuple[float, float, float, float, float, float]


@dataclass(frozen=True)
class RasterMeta:
    """What one raster file holds (read once while checking it)."""

    crs_wkt: str
    transform: Transform
    height: int
    width: int
    count: int
    dtype: str
    nodata: float | None

    @property
    def resolution(self) -> float:
        return abs(self.transform[0])


@dataclass(frozen=True)
class ShardWindow:
    """One shard window of a scene grid: ``height`` x ``width`` pixels from row ``row``
    and column ``col``; ``transform`` is the window's own (its top-left pixel)."""

    row: int
    col: int
    height: int
    width: int
    crs_wkt: str
    transform: Transform

    @property
    def shape(self) -> tuple[int, int]:
        return self.height, self.width

    @property
    def resolution(self) -> float:
        return abs(self.transform[0])


@dataclass(frozen=True)
class TargetGrid:
    crs_wkt: str
    transform: Transform
    height: int
    width: int

    @property
    def resolution(self) -> float:
        return abs(self.transform[0])

    def window_transform(self, row_off: int, col_off: int) -> Transform:
        a, b, c, d, e, f = self.transform
        return (a, b, c + a * col_off + b * row_off, d, e, f + d * col_off + e * row_off)

    def window(self, row: int, col: int, height: int, width: int) -> ShardWindow:
        return ShardWindow(row, col, height, width, self.crs_wkt,
                           self.window_transform(row, col))


def target_grid(bands: Sequence[RasterMeta], resolution: float | None = None) -> TargetGrid:
    """The finest band's grid, or that extent at ``resolution`` metres (CRS units)."""
    finest = min(bands, key=lambda m: m.resolution)
    a, b, c, d, e, f = finest.transform
    if resolution is None:
        return TargetGrid(finest.crs_wkt, finest.transform, finest.height, finest.width)
    if not math.isfinite(resolution) or resolution <= 0:
        raise InputError(f"--resolution {resolution} must be a positive number (metres per "
                         "pixel)")
    width = max(1, math.ceil(finest.width * abs(a) / resolution - 1e-9))
    height = max(1, math.ceil(finest.height * abs(e) / resolution - 1e-9))
    sx = math.copysign(resolution, a)
    sy = math.copysign(resolution, e)
    return TargetGrid(finest.crs_wkt, (sx, 0.0, c, 0.0, sy, f), height, width)


def on_grid(meta: RasterMeta, grid: TargetGrid) -> tuple[int, int] | None:
    """(row_off, col_off) of the grid's origin in the source if the pixels coincide."""
    a, _, c, _, e, f = meta.transform
    ga, _, gc, _, ge, gf = grid.transform
    if not (math.isclose(a, ga, rel_tol=1e-9) and math.isclose(e, ge, rel_tol=1e-9)):
        return None
    col = (gc - c) / a
    row = (gf - f) / e
    if abs(col - round(col)) > 1e-6 or abs(row - round(row)) > 1e-6:
        return None
    return round(row), round(col)


def kernel_for(meta: RasterMeta, grid: TargetGrid) -> str:
    """'average' when the band is finer than the grid, else 'bilinear'."""
    return "average" if meta.resolution < grid.resolution * (1 - 1e-9) else "bilinear"
