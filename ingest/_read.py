"""Read one shard window of a scene from its sources onto the target grid.

Bands already on the grid are copied exactly (a windowed read); others are
resampled by GDAL's warper with the band's kernel, restricted to the window,
so each task touches only the source pixels of its shard.

Fill never mixes with data: a source's own nodata value, or the scene's fill
when the file declares none (Sentinel-2 and Landsat band files carry no nodata
tag but use 0), is excluded from resampling, and fill pixels come out as the
scene's fill value (NaN for floating-point scenes).
"""

from __future__ import annotations

import math

import numpy as np

from chunkstore import InputError

from ._sources import BandSource
from ._target import TargetGrid, kernel_for, on_grid


def _fill_value(dtype: str, nodata: float | None) -> float:
    if nodata is not None:
        return nodata
    return math.nan if np.dtype(dtype).kind == "f" else 0


def _fits(value: float | None, dtype: str) -> bool:
    """Whether ``value`` is a representable nodata value of ``dtype``."""
    if value is None:
        return False
    dt = np.dtype(dtype)
    if dt.kind == "f":
        return True
    if math.isnan(value) or value != int(value):
        return False
    info = np.iinfo(dt)
    return info.min <= value <= info.max


def _is_fill(data: np.ndarray, value: float) -> np.ndarray:
    return np.isnan(data) if math.isnan(value) else data == value


def _cast(data: np.ndarray, dtype: str, path: str) -> np.ndarray:
    """``data`` as ``dtype``; a float value that overflows float32 is refused, not inf."""
    if data.dtype == np.dtype(dtype):
        return data
    with np.errstate(over="ignore", invalid="ignore"):
        out = data.astype(dtype)
    if out.dtype.kind == "f" and data.dtype.kind == "f":
        bad = np.isinf(out) & np.isfinite(data)
        if bad.any():
            raise InputError(
                f"{path}: holds values beyond the {dtype} range of the scene (e.g. "
                f"{data[bad][0]:g}): rescale the data (e.g. gdal_translate -scale) first")
    return out


def read_band(src: BandSource, grid: TargetGrid, row_off: int, col_off: int, height: int,
              width: int, dtype: str, nodata: float | None, kernel: str | None = None,
              ) -> np.ndarray:
    """Band ``src`` on the grid window; pixels outside the source or nodata in it get
    the scene fill (``nodata``; 0 or NaN when None).

    ``kernel`` overrides the automatic choice when resampling is needed.
    """
    import rasterio
    from affine import Affine
    from rasterio._err import CPLE_BaseError  # GDAL errors (not re-exported by rasterio.errors)
    from rasterio.enums import Resampling
    from rasterio.warp import reproject
    from rasterio.windows import Window

    fill = _fill_value(dtype, nodata)
    try:
        with rasterio.open(src.path) as ds:
            src_dtype = ds.dtypes[src.index - 1]
            # The file's own nodata, else the scene's (band files that declare none).
            src_nodata = ds.nodata if ds.nodata is not None else (
                fill if _fits(fill, src_dtype) else None)
            out = np.full((height, width), fill, dtype=dtype)
            offset = on_grid(src.meta, grid) if ds.crs.to_wkt() == grid.crs_wkt else None
            if offset is not None:
                r0, c0 = row_off + offset[0], col_off + offset[1]
                ra, rb = max(r0, 0), min(r0 + height, ds.height)
                ca, cb = max(c0, 0), min(c0 + width, ds.width)
                if rb > ra and cb > ca:
                    data = ds.read(src.index, window=Window(ca, ra, cb - ca, rb - ra))
                    part = _cast(data, dtype, src.path)
                    if ds.nodata is not None and not _same(ds.nodata, fill):
                        part[_is_fill(data, ds.nodata)] = fill
                    out[ra - r0:rb - r0, ca - c0:cb - c0] = part
                return out
            # Warp in float64 for a float64 source so an overflow is caught, not clamped.
            wide = np.dtype(src_dtype) == np.float64 and np.dtype(dtype).kind == "f"
            work = "float64" if wide else dtype
            buf = out if work == dtype else np.full((height, width), fill, dtype=work)
            reproject(
                rasterio.band(ds, src.index), buf, src_nodata=src_nodata,
                dst_transform=Affine(*grid.window_transform(row_off, col_off)),
                dst_crs=grid.crs_wkt, dst_nodata=fill,
                resampling=Resampling[kernel or kernel_for(src.meta, grid)],
            )
            return buf if buf is out else _cast(buf, dtype, src.path)
    except (rasterio.errors.RasterioError, CPLE_BaseError) as exc:
        raise InputError(f"{src.path}: reading rows {row_off}-{row_off + height} failed "
                         f"({str(exc).splitlines()[0][:120]}): the file is truncated or corrupt; "
                         "download or export it again") from None


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b
