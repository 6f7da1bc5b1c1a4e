"""Label source: a class raster at any resolution and in any integer coding, warped
onto the scene grid by nearest neighbour (or mode, when the label is finer than the grid).

Its class ids are the codes found on the ingest's scenes, in ascending order; the file's
nodata, ``nodata_class``, NaN and 255 in a uint8 file mark unlabelled pixels.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from chunkstore import LABEL_NODATA, InputError, Store

from ._label_source import (
    Bounds,
    Footprint,
    check_cover,
    class_names,
    in_crs,
    window_bounds,
)
from ._rasters import check_raster
from ._target import ShardWindow

STRIP = 1 << 20  # label pixels read at a time


@dataclass(frozen=True)
class RasterLabel:
    """Band 1 of ``path``; the file's code ``values[k]`` is class id ``k``."""

    path: str
    classes: tuple[str, ...]
    values: tuple[int, ...]
    nodata_class: int | None = None

    @property
    def source(self) -> Mapping[str, Any]:
        src = {"from": "raster", "path": self.path, "values": list(self.values)}
        return src if self.nodata_class is None else {**src, "nodata_class": self.nodata_class}

    def read(self, store: Store, window: ShardWindow) -> np.ndarray:
        import rasterio

        out = np.full(window.shape, LABEL_NODATA, dtype=np.uint8)
        with rasterio.open(self.path) as ds:
            whole = _window(ds, _bounds_in(ds, window), pad=2)
            if whole is None:
                return out
            step = math.ceil(window.height / math.ceil(whole.width * whole.height / STRIP))
            for r0 in range(0, window.height, step):  # row strips: flat memory
                out[r0:r0 + step] = self._ids(ds, _rows(window, r0, step))
        return out

    def _ids(self, ds: Any, window: ShardWindow) -> np.ndarray:
        """The class ids of ``window`` from the open file ``ds``."""
        from affine import Affine
        from rasterio.enums import Resampling
        from rasterio.warp import reproject

        out = np.full(window.shape, LABEL_NODATA, dtype=np.uint8)
        win = _window(ds, _bounds_in(ds, window), pad=2)
        if win is None:
            return out
        finer = abs(ds.transform.a) < 0.99 * window.resolution  # not by rounding
        tmp = np.full(window.shape, np.nan)
        reproject(_codes(ds, win, self.nodata_class), tmp, src_transform=ds.window_transform(win),
                  src_crs=ds.crs, src_nodata=np.nan, dst_transform=Affine(*window.transform),
                  dst_crs=window.crs_wkt, dst_nodata=np.nan,
                  resampling=Resampling.mode if finer else Resampling.nearest)
        codes = np.asarray(self.values, dtype=np.float64)
        ids = np.minimum(np.searchsorted(codes, tmp), len(codes) - 1)
        hit = codes[ids] == tmp
        out[hit] = ids[hit]
        return out


def _rows(window: ShardWindow, r0: int, height: int) -> ShardWindow:
    """Rows ``r0`` .. ``r0 + height`` of ``window`` (clipped to it)."""
    a, b, c, d, e, f = window.transform
    return replace(window, row=window.row + r0, height=min(height, window.height - r0),
                   transform=(a, b, c + b * r0, d, e, f + e * r0))


def _bounds_in(ds: Any, window: ShardWindow) -> Bounds | None:
    return in_crs(window_bounds(window), window.crs_wkt, ds.crs.to_wkt())


def _window(ds: Any, b: Bounds | None, pad: int) -> Any:
    """The window of ``ds`` over ``b`` (in its CRS) plus ``pad`` pixels, clipped to the
    file; None when they do not meet."""
    from rasterio.windows import Window

    if b is None:
        return None
    inv = ~ds.transform
    (c0, r0), (c1, r1) = inv @ (b[0], b[3]), inv @ (b[2], b[1])
    (c0, c1), (r0, r1) = sorted((c0, c1)), sorted((r0, r1))
    col0, row0 = max(0, math.floor(c0 + 1e-6) - pad), max(0, math.floor(r0 + 1e-6) - pad)
    col1 = min(ds.width, math.ceil(c1 - 1e-6) + pad)
    row1 = min(ds.height, math.ceil(r1 - 1e-6) + pad)
    if col1 <= col0 or row1 <= row0:
        return None
    return Window(col0, row0, col1 - col0, row1 - row0)


def _codes(ds: Any, win: Any, nodata_class: int | None) -> np.ndarray:
    """Band 1 of ``ds`` in ``win`` as float64, unlabelled pixels NaN."""
    raw = ds.read(1, window=win)
    bad = np.zeros(raw.shape, dtype=bool)
    if raw.dtype.kind == "f":
        bad |= ~np.isfinite(raw)
    if ds.nodata is not None and not math.isnan(ds.nodata):
        bad |= raw == (raw.dtype.type(ds.nodata) if raw.dtype.kind == "f" else ds.nodata)
    if nodata_class is not None:
        bad |= raw == nodata_class
    if raw.dtype == np.uint8:
        bad |= raw == LABEL_NODATA
    out = raw.astype(np.float64)
    out[bad] = np.nan
    return out


def _strips(win: Any) -> Iterator[Any]:
    from rasterio.windows import Window

    rows = max(1, STRIP // max(int(win.width), 1))
    for r in range(int(win.row_off), int(win.row_off + win.height), rows):
        yield Window(win.col_off, r, win.width, min(rows, int(win.row_off + win.height) - r))


def _scan(path: str, ds: Any, scene: Footprint, nodata_class: int | None,
          found: set[float]) -> None:
    """Add the codes of ``ds`` on ``scene`` to ``found``; refuse a non-integral code, and
    labels that miss the scene; warn when they barely cover it."""
    b = in_crs(scene.bounds, scene.crs_wkt, ds.crs.to_wkt())
    win = _window(ds, b, pad=0)
    count = 0
    for strip in _strips(win) if win is not None else ():
        v = _codes(ds, strip, nodata_class)
        v = v[~np.isnan(v)]
        if not v.size:
            continue
        odd = v[v != np.floor(v)]
        if odd.size:
            raise InputError(f"{path}: label value {odd[0]:g} is not a whole number: give a "
                             "class raster of integer class values")
        count += v.size
        found.update(np.unique(v).tolist())
        if len(found) > LABEL_NODATA:
            class_names(path, sorted(int(c) for c in found), None)  # refuses
    share = 0.0
    if b is not None and count:
        share = count * abs(ds.transform.a * ds.transform.e) / ((b[2] - b[0]) * (b[3] - b[1]))
    check_cover(path, scene, share, tuple(ds.bounds), ds.crs.to_wkt(), "pixel")


def raster_label(path: str, classes: Sequence[str] | None, scenes: Sequence[Footprint],
                 nodata_class: int | None = None) -> RasterLabel:
    """The checked class raster at ``path`` for ``scenes``: its class ids are the codes on
    them in ascending order, named by ``classes`` (see :func:`class_names`) or
    ``class_<code>``; ``nodata_class`` marks one code unlabelled."""
    import rasterio

    meta = check_raster(path)
    if meta.count != 1:
        raise InputError(f"{path}: label raster has {meta.count} bands: give a single-band "
                         "class raster")
    if np.dtype(meta.dtype).kind not in "iuf":
        raise InputError(f"{path}: label raster is {meta.dtype}: give integer class values")
    found: set[float] = set()
    with rasterio.open(path) as ds:
        for scene in scenes:
            _scan(path, ds, scene, nodata_class, found)
    names, values = class_names(path, sorted(int(c) for c in found), classes)
    return RasterLabel(path, names, values, nodata_class)
