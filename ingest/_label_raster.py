"""Label source: a class raster at any resolution, warped onto the scene grid by
nearest neighbour (or mode, when the label is finer than the grid)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from chunkstore import LABEL_NODATA, InputError, Store

from ._rasters import check_raster
from ._target import ShardWindow


@dataclass(frozen=True)
class RasterLabel:
    """Class values 0..K-1 in band 1 of ``path`` (255 or the file's nodata = unlabelled)."""

    path: str
    classes: tuple[str, ...]

    @property
    def source(self) -> Mapping[str, Any]:
        return {"from": "raster", "path": self.path}

    def read(self, store: Store, window: ShardWindow) -> np.ndarray:
        import rasterio
        from affine import Affine
        from rasterio.enums import Resampling
        from rasterio.warp import reproject

        with rasterio.open(self.path) as ds:
            kernel = (Resampling.mode if abs(ds.transform.a) < window.resolution
                      else Resampling.nearest)
            tmp = np.full(window.shape, LABEL_NODATA, dtype=np.uint16)
            reproject(rasterio.band(ds, 1), tmp, src_nodata=ds.nodata,
                      dst_transform=Affine(*window.transform), dst_crs=window.crs_wkt,
                      dst_nodata=LABEL_NODATA, resampling=kernel)
        return np.where(tmp < LABEL_NODATA, tmp, LABEL_NODATA).astype(np.uint8)


def raster_label(path: str, classes: Sequence[str] | None) -> RasterLabel:
    """The checked class raster at ``path``; ``classes`` names its values (else
    ``class_0``, ``class_1``, ...)."""
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
    return RasterLabel(path, names)
