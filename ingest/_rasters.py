"""Open and check one raster file: the scene bands and class rasters alike."""

from __future__ import annotations

from pathlib import Path

from chunkstore import InputError

from ._target import RasterMeta


def fail(path: str | Path, problem: str, fix: str) -> InputError:
    return InputError(f"{path}: {problem}: {fix}")


def _gdal_message(exc: Exception) -> str:
    return str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__


def check_raster(path: str) -> RasterMeta:
    """Open ``path``, decode its first and last pixels, and return its metadata."""
    import rasterio
    from rasterio.windows import Window

    p = Path(path)
    if not p.exists():
        raise fail(path, "no such file", "check the path")
    if p.is_file() and p.stat().st_size == 0:
        raise fail(path, "file is empty (0 bytes)", "download or export it again")
    try:
        with rasterio.open(path) as ds:
            if ds.crs is None:
                raise fail(path, "raster has no CRS",
                           "assign one, e.g. gdal_edit.py -a_srs EPSG:32633 FILE")
            if ds.transform.b or ds.transform.d:
                raise fail(path, "raster is rotated", "warp it north-up with gdalwarp first")
            for bidx in range(1, ds.count + 1):
                for col, row in ((0, 0), (ds.width - 1, ds.height - 1)):
                    ds.read(bidx, window=Window(col, row, 1, 1))
            t = ds.transform
            return RasterMeta(ds.crs.to_wkt(), (t.a, t.b, t.c, t.d, t.e, t.f), ds.height,
                              ds.width, ds.count, ds.dtypes[0], ds.nodata)
    except InputError:
        raise
    except Exception as exc:  # rasterio raises several types for broken files
        raise fail(path, f"cannot be decoded ({_gdal_message(exc)})",
                   "the file is truncated or corrupt: download or export it again") from None
