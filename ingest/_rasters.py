"""Open and check one raster file: the scene bands and class rasters alike."""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from chunkstore import InputError

from ._target import RasterMeta


def fail(path: str | Path, problem: str, fix: str) -> InputError:
    return InputError(f"{path}: {problem}: {fix}")


def _gdal_message(exc: Exception) -> str:
    """GDAL's first line, without rasterio's pointer to a chained exception."""
    for line in str(exc).splitlines():
        if line and "See previous exception" not in line:
            return line[:160]
    cause = exc.__cause__ or exc.__context__
    return _gdal_message(cause) if cause is not None else type(exc).__name__


_MAGIC = ((b"PK\x03\x04", "a ZIP archive (unzip it and point at the raster inside)"),
          (b"%PDF", "a PDF document"), (b"\x89PNG", "a PNG image without georeferencing"),
          (b"\xff\xd8\xff", "a JPEG image without georeferencing"),
          (b"<", "an XML or HTML file (an error page saved by a download?)"),
          (b"{", "a JSON file"), (b"\x1f\x8b", "a gzip archive (gunzip it first)"))
_RADAR_NAME = re.compile(r"(?i)^s1[abcd]-[a-z0-9]+-(grd|slc)-")


def _kind_of(path: Path) -> str:
    """What a file GDAL cannot open looks like, from its first bytes."""
    head = path.read_bytes()[:8] if path.is_file() else b""
    for magic, what in _MAGIC:
        if head.startswith(magic):
            return what
    if head and all(32 <= c < 127 or c in (9, 10, 13) for c in head):
        return "a text file"
    return "not a raster format GDAL reads"


@contextmanager
def quiet_gdal() -> Iterator[None]:
    """GDAL's own error lines (rasterio logs each one) and rasterio's warning about a
    file without georeferencing kept out of the output: the one error satchunk raises
    says what went wrong."""
    from rasterio.errors import NotGeoreferencedWarning

    loggers = [logging.getLogger(n) for n in ("rasterio._env", "rasterio._err",
                                              "rasterio._io", "rasterio._base")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def check_raster(path: str) -> RasterMeta:
    """Open ``path``, decode its first and last pixels, and return its metadata."""
    import rasterio
    from rasterio.errors import RasterioIOError
    from rasterio.windows import Window

    p = Path(path)
    if not p.exists():
        raise fail(path, "no such file", "check the path")
    if p.is_file() and p.stat().st_size == 0:
        raise fail(path, "file is empty (0 bytes)", "download or export it again")
    with quiet_gdal():
        try:
            ds = rasterio.open(path)
        except RasterioIOError as exc:
            if "not recognized as being in a supported file format" in str(exc):
                raise fail(path, f"is not a raster: it looks like {_kind_of(p)}",
                           "give a GeoTIFF/COG, JP2 or VRT file") from None
            raise fail(path, f"cannot be opened ({_gdal_message(exc)})",
                       "the file is truncated or corrupt: download or export it again") from None
        with ds:
            _check_kind(ds, p)
            try:
                for bidx in range(1, ds.count + 1):
                    for col, row in ((0, 0), (ds.width - 1, ds.height - 1)):
                        ds.read(bidx, window=Window(col, row, 1, 1))
            except Exception as exc:  # rasterio raises several types for broken files
                raise fail(path, f"cannot be decoded ({_gdal_message(exc)})",
                           "the file is truncated or corrupt: download or export it "
                           "again") from None
            t = ds.transform
            return RasterMeta(ds.crs.to_wkt(), (t.a, t.b, t.c, t.d, t.e, t.f), ds.height,
                              ds.width, ds.count, ds.dtypes[0], ds.nodata)


def _check_kind(ds: Any, p: Path) -> None:
    """Refuse what opens but is no map-projected image: complex SAR, radar geometry,
    rasters without a CRS or a geotransform, rotated ones."""
    radar = bool(ds.gcps[0]) or bool(_RADAR_NAME.match(p.name))
    if ds.dtypes[0].startswith("complex"):
        raise fail(p, f"holds complex-valued {ds.dtypes[0]} pixels (SAR single-look complex, "
                   "e.g. a Sentinel-1 SLC), which satchunk does not ingest",
                   "use the GRD product of the same acquisition, terrain-corrected to a map "
                   "projection (e.g. ESA SNAP's Terrain Correction)")
    if radar and (ds.crs is None or ds.transform.is_identity):
        raise fail(p, "is in radar geometry (ground control points or a Sentinel-1 measurement "
                   "file, no map projection)",
                   "terrain-correct it to a map projection first (e.g. ESA SNAP's Terrain "
                   "Correction, or gdalwarp -t_srs EPSG:<UTM zone> for a rough warp along "
                   "its GCPs)")
    if ds.crs is None and p.suffix.lower() == ".nc":
        raise fail(p, "GDAL finds no CRS in this netCDF (no CF grid_mapping variable)",
                   "convert it to a GeoTIFF with its CRS, e.g. rio convert FILE.nc OUT.tif && "
                   "rio edit-info --crs EPSG:32633 OUT.tif")
    if ds.crs is None:
        raise fail(p, "raster has no CRS",
                   "assign the CRS its coordinates are in, e.g. rio edit-info --crs "
                   "EPSG:32633 FILE (or gdal_edit.py -a_srs)")
    if ds.transform.is_identity:
        raise fail(p, "raster has no geotransform (only pixel coordinates)",
                   "give a georeferenced file, or set its corner coordinates with "
                   "gdal_edit.py -a_ullr ULX ULY LRX LRY FILE")
    if ds.transform.b or ds.transform.d:
        raise fail(p, "raster is rotated", "warp it north-up with gdalwarp first")
    left, bottom, right, top = ds.bounds
    if ds.crs.is_geographic and (max(abs(left), abs(right)) > 360
                                 or max(abs(bottom), abs(top)) > 90):
        raise fail(p, f"coordinates ({left:.0f}, {bottom:.0f}, {right:.0f}, {top:.0f}) are not "
                   f"degrees, but the file's CRS is {ds.crs.to_string()}",
                   "its CRS tag is wrong; set the right one (e.g. gdal_edit.py -a_srs "
                   "EPSG:32633 FILE)")
