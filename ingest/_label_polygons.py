"""Label source: polygons with a class field (text names or integer codes),
rasterized per shard from a bounding-box read, so memory stays flat."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from chunkstore import LABEL_NODATA, InputError, Store

from ._target import ShardWindow


@dataclass(frozen=True)
class PolygonLabel:
    """Polygons of ``path`` burnt in with the class of their ``field`` value."""

    path: str
    classes: tuple[str, ...]
    field: str
    values: tuple[tuple[object, int], ...]  # field value -> class index

    @property
    def source(self) -> Mapping[str, Any]:
        return {"from": "polygons", "path": self.path, "field": self.field}

    def read(self, store: Store, window: ShardWindow) -> np.ndarray:
        import pyogrio
        from affine import Affine
        from pyproj import CRS
        from rasterio.features import rasterize
        from rasterio.warp import transform_bounds

        t = Affine(*window.transform)
        h, w = window.shape
        left, top = t.c, t.f
        right, bottom = t.c + t.a * w, t.f + t.e * h
        src_crs = CRS.from_user_input(pyogrio.read_info(self.path)["crs"])
        box = transform_bounds(window.crs_wkt, src_crs.to_wkt(), left, min(top, bottom), right,
                               max(top, bottom), densify_pts=21)
        df = pyogrio.read_dataframe(self.path, columns=[self.field], bbox=box)
        out = np.full(window.shape, LABEL_NODATA, dtype=np.uint8)
        if len(df) == 0:
            return out
        df = df.to_crs(window.crs_wkt)
        lookup = {str(k) if not isinstance(k, int) else k: v for k, v in self.values}
        shapes = []
        for geom, value in zip(df.geometry, df[self.field], strict=True):
            if geom is None or geom.is_empty or value is None or value != value:
                continue
            key = int(value) if isinstance(value, int | float | np.number) else str(value)
            if key in lookup:
                shapes.append((geom, lookup[key]))
        if shapes:
            rasterize(shapes, out_shape=window.shape, transform=t, fill=LABEL_NODATA, out=out,
                      dtype=np.uint8)
        return out


def polygon_label(path: str, field: str | None) -> PolygonLabel:
    """The checked polygon file at ``path``, classed by ``field``."""
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
    return PolygonLabel(path, names, field, mapping)
