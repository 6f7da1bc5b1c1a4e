"""Label source: polygons with a class field (text names or integer codes),
rasterized per shard from a bounding-box read, so memory stays flat.

Its classes are the field values of the polygons on the ingest's scenes: text names
sorted, or integer codes ascending (named ``"3"``); class id ``k`` is ``values[k]``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from chunkstore import LABEL_NODATA, InputError, Store

from ._label_source import FEW, Footprint, check_cover, in_crs, window_bounds
from ._target import ShardWindow


@dataclass(frozen=True)
class PolygonLabel:
    """Polygons of ``path`` burnt in with the class of their ``field`` value."""

    path: str
    classes: tuple[str, ...]
    field: str
    values: tuple[tuple[object, int], ...]  # field value (int code or text) -> class id

    @property
    def source(self) -> Mapping[str, Any]:
        return {"from": "polygons", "path": self.path, "field": self.field,
                "values": [v for v, _ in self.values]}

    def read(self, store: Store, window: ShardWindow) -> np.ndarray:
        import pyogrio
        from affine import Affine
        from pyproj import CRS
        from rasterio.features import rasterize

        out = np.full(window.shape, LABEL_NODATA, dtype=np.uint8)
        src_crs = CRS.from_user_input(pyogrio.read_info(self.path)["crs"]).to_wkt()
        box = in_crs(window_bounds(window), window.crs_wkt, src_crs)
        if box is None:
            return out
        df = pyogrio.read_dataframe(self.path, columns=[self.field], bbox=box)
        if len(df) == 0:
            return out
        df = df.to_crs(window.crs_wkt)
        lookup = dict(self.values)
        integer = all(isinstance(k, int) for k in lookup)
        shapes = [(geom, lookup[key]) for geom, value in zip(df.geometry, df[self.field],
                                                             strict=True)
                  if geom is not None and not geom.is_empty
                  and (key := _key(value, integer)) in lookup]
        if shapes:
            rasterize(shapes, out_shape=window.shape, transform=Affine(*window.transform),
                      fill=LABEL_NODATA, out=out, dtype=np.uint8)
        return out


def _missing(value: object) -> bool:
    import pandas as pd

    return bool(pd.isna(value))  # None, NaN, NA


def _integral(value: object) -> bool:
    return isinstance(value, int | np.integer) or (
        isinstance(value, float | np.floating) and float(value).is_integer())


def _key(value: Any, integer: bool) -> int | str | None:
    """The class key of a field value: its integer code, or its text; None for none."""
    if _missing(value):
        return None
    if integer:
        return int(value) if _integral(value) else None
    return str(value)


def _on_scene(path: str, field: str, crs_wkt: str, scene: Footprint) -> tuple[list[object], float]:
    """The field values of the polygons on ``scene`` and the share of it they cover (at
    least :data:`FEW` where points or lines are among them: no warning for a trace)."""
    import pyogrio
    import shapely

    b = in_crs(scene.bounds, scene.crs_wkt, crs_wkt)
    if b is None:
        return [], 0.0
    df = pyogrio.read_dataframe(path, columns=[field], bbox=b)
    df = df[~df.geometry.isna() & ~df.geometry.is_empty]
    if len(df) == 0:
        return [], 0.0
    geoms = df.geometry.to_crs(scene.crs_wkt).make_valid().values
    box = shapely.box(*scene.bounds)
    clipped = shapely.intersection(geoms, box)
    on = ~shapely.is_empty(clipped) & ((shapely.area(clipped) > 0)
                                      | (shapely.get_dimensions(geoms) < 2))
    classed = on & np.array([not _missing(v) for v in df[field]], dtype=bool)
    if on.any() and not classed.any():
        raise InputError(f"{path}: the polygons on scene {scene.item} have no {field!r} "
                         "value: give each polygon a class")
    if not classed.any():
        return [], 0.0
    share = shapely.union_all(clipped[classed]).area / box.area
    if (shapely.get_dimensions(geoms[classed]) < 2).any():
        share = max(share, FEW)  # points and lines label a trace of pixels by design
    return df[field][classed].tolist(), share


def polygon_label(path: str, field: str | None, scenes: Sequence[Footprint]) -> PolygonLabel:
    """The checked polygon file at ``path`` for ``scenes``, classed by the ``field`` values
    of the polygons that fall on them."""
    import pyogrio
    from pyproj import CRS

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
    crs_wkt = CRS.from_user_input(info["crs"]).to_wkt()
    tb = info.get("total_bounds")
    total = None if tb is None or not np.isfinite(tb).all() else (
        float(tb[0]), float(tb[1]), float(tb[2]), float(tb[3]))
    crs = CRS.from_wkt(crs_wkt)
    if crs.is_geographic and total is not None and (
            max(abs(total[0]), abs(total[2])) > 360 or max(abs(total[1]), abs(total[3])) > 90):
        raise InputError(f"{path}: coordinates ({', '.join(f'{v:.0f}' for v in total)}) are not "
                         f"degrees, but the file's CRS is {crs.to_string()}: its CRS tag is "
                         "wrong; set the right one (e.g. ogr2ogr -a_srs EPSG:... OUT.gpkg FILE)")
    found: list[object] = []
    for scene in scenes:
        values, share = _on_scene(path, field, crs_wkt, scene)
        check_cover(path, scene, share, total, crs_wkt, "polygon")
        found += values
    integer = all(_integral(v) for v in found)
    keys: list[Any] = sorted({_key(v, integer) for v in found})  # all int, or all str
    if len(keys) > LABEL_NODATA:
        raise InputError(f"{path}: {len(keys)} classes in {field!r} on the scenes: at most "
                         f"{LABEL_NODATA} fit uint8; merge classes")
    return PolygonLabel(path, tuple(str(k) for k in keys), field,
                        tuple((k, i) for i, k in enumerate(keys)))
