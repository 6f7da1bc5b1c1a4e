"""Label sources: a class raster at any resolution, or polygons with a class field.

Both become ``label`` (uint8, 255 = unlabelled) on the scene grid: rasters by
nearest (or mode, when the label is finer than the grid), polygons rasterized
per shard from a bounding-box read, so memory stays flat.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from chunkstore import LABEL_NODATA, InputError

from ._sources import LabelSource, check_raster


def label_for(path: str, classes: Sequence[str] | None) -> LabelSource:
    """A raster label: class values 0..K-1 (255 or the file's nodata = unlabelled)."""
    import rasterio

    meta = check_raster(path)
    if meta.count != 1:
        raise InputError(f"{path}: label raster has {meta.count} bands: give a single-band "
                         "class raster")
    if not np.issubdtype(np.dtype(meta.dtype), np.integer):
        raise InputError(f"{path}: label raster is {meta.dtype}: class labels must be integers")
    top = -1
    with rasterio.open(path) as ds:
        nodata = ds.nodata
        for _, window in ds.block_windows(1):
            block = ds.read(1, window=window)
            if nodata is not None:
                block = block[block != nodata]
            block = block[block != LABEL_NODATA]
            if block.size:
                if block.min() < 0:
                    raise InputError(f"{path}: label raster has negative values: classes must "
                                     "be 0..254")
                top = max(top, int(block.max()))
    if top >= LABEL_NODATA:
        raise InputError(f"{path}: label value {top} is too large: classes must be 0..254")
    n = top + 1
    if classes:
        if len(classes) < n:
            raise InputError(f"{path}: has class values up to {top} but --classes names "
                             f"{len(classes)}: name at least {n} classes")
        names = tuple(classes)
    else:
        names = tuple(f"class_{v}" for v in range(max(n, 1)))
    return LabelSource(path, "raster", names)


def vector_label(path: str, field: str | None) -> LabelSource:
    """Polygon labels with a class field (text names or integer codes)."""
    import pyogrio

    p = Path(path)
    if not p.exists():
        raise InputError(f"{path}: no such file: check the --labels path")
    if p.stat().st_size == 0:
        raise InputError(f"{path}: file is empty (0 bytes): export the labels again")
    try:
        info = pyogrio.read_info(path)
    except Exception as exc:
        raise InputError(f"{path}: cannot be read as polygons ({str(exc)[:120]}): give a "
                         "GeoJSON or GPKG file") from None
    fields = [str(f) for f in info["fields"]]
    if info.get("crs") is None:
        raise InputError(f"{path}: polygon labels have no CRS: save them with one")
    if not field:
        raise InputError(f"{path}: polygon labels need --label-field, one of: {', '.join(fields)}")
    if field not in fields:
        raise InputError(f"{path}: no field {field!r} in the polygon labels: use --label-field "
                         f"with one of: {', '.join(fields) or '(none)'}")
    df = pyogrio.read_dataframe(path, columns=[field], read_geometry=False)
    vals = [v for v in df[field].tolist() if v is not None and v == v]
    if not vals:
        raise InputError(f"{path}: field {field!r} is empty: every polygon needs a class")
    if all(isinstance(v, int | np.integer) or (isinstance(v, float) and v.is_integer())
           for v in vals):
        ints = sorted({int(v) for v in vals})
        if ints[0] < 0 or ints[-1] >= LABEL_NODATA:
            raise InputError(f"{path}: class codes in {field!r} must be 0..254")
        names = tuple(str(v) for v in range(ints[-1] + 1))
        mapping = tuple((v, v) for v in ints)
    else:
        uniq = sorted({str(v) for v in vals})
        if len(uniq) >= LABEL_NODATA:
            raise InputError(f"{path}: {len(uniq)} classes in {field!r}: at most 254 fit uint8")
        names = tuple(uniq)
        mapping = tuple((v, i) for i, v in enumerate(uniq))
    return LabelSource(path, "vector", names, field, mapping)


def read_label(label: LabelSource, crs_wkt: str, transform: tuple[float, ...],
               shape: tuple[int, int], target_res: float) -> np.ndarray:
    """The label on one window of the scene grid (``transform`` is the window's)."""
    if label.kind == "vector":
        return _rasterize(label, crs_wkt, transform, shape)
    import rasterio
    from affine import Affine
    from rasterio.enums import Resampling
    from rasterio.warp import reproject

    out = np.full(shape, LABEL_NODATA, dtype=np.uint8)
    with rasterio.open(label.path) as ds:
        kernel = Resampling.mode if abs(ds.transform.a) < target_res else Resampling.nearest
        tmp = np.full(shape, LABEL_NODATA, dtype=np.uint16)
        reproject(rasterio.band(ds, 1), tmp, src_nodata=ds.nodata,
                  dst_transform=Affine(*transform), dst_crs=crs_wkt, dst_nodata=LABEL_NODATA,
                  resampling=kernel)
    out[:] = np.where(tmp < LABEL_NODATA, tmp, LABEL_NODATA).astype(np.uint8)
    return out


def _rasterize(label: LabelSource, crs_wkt: str, transform: tuple[float, ...],
               shape: tuple[int, int]) -> np.ndarray:
    import pyogrio
    from affine import Affine
    from pyproj import CRS
    from rasterio.features import rasterize
    from rasterio.warp import transform_bounds

    t = Affine(*transform)
    h, w = shape
    left, top = t.c, t.f
    right, bottom = t.c + t.a * w, t.f + t.e * h
    src_crs = CRS.from_user_input(pyogrio.read_info(label.path)["crs"])
    box = transform_bounds(crs_wkt, src_crs.to_wkt(), left, min(top, bottom), right,
                           max(top, bottom), densify_pts=21)
    df = pyogrio.read_dataframe(label.path, columns=[label.field], bbox=box)
    out = np.full(shape, LABEL_NODATA, dtype=np.uint8)
    if len(df) == 0:
        return out
    df = df.to_crs(crs_wkt)
    lookup = {str(k) if not isinstance(k, int) else k: v for k, v in label.values}
    shapes = []
    for geom, value in zip(df.geometry, df[label.field], strict=True):
        if geom is None or geom.is_empty or value is None or value != value:
            continue
        key = int(value) if isinstance(value, int | float | np.number) else str(value)
        if key in lookup:
            shapes.append((geom, lookup[key]))
    if shapes:
        rasterize(shapes, out_shape=shape, transform=t, fill=LABEL_NODATA, out=out,
                  dtype=np.uint8)
    return out
