"""Read one shard window of a scene from its sources onto the target grid.

Bands already on the grid are copied exactly (a windowed read); others are
resampled by GDAL's warper with the band's kernel, restricted to the window,
so each task touches only the source pixels of its shard.
"""

from __future__ import annotations

import numpy as np

from chunkstore import InputError

from ._sources import BandSource
from ._target import TargetGrid, kernel_for, on_grid


def read_band(src: BandSource, grid: TargetGrid, row_off: int, col_off: int, height: int,
              width: int, dtype: str, nodata: float | None, kernel: str | None = None,
              ) -> np.ndarray:
    """Band ``src`` on the grid window; pixels outside the source get ``nodata``.

    ``kernel`` overrides the automatic choice when resampling is needed.
    """
    import rasterio
    from affine import Affine
    from rasterio.enums import Resampling
    from rasterio.warp import reproject
    from rasterio.windows import Window

    fill = 0 if nodata is None else nodata
    try:
        with rasterio.open(src.path) as ds:
            offset = on_grid(src.meta, grid) if ds.crs.to_wkt() == grid.crs_wkt else None
            if offset is not None:
                win = Window(col_off + offset[1], row_off + offset[0], width, height)
                data = ds.read(src.index, window=win, boundless=True, fill_value=fill)
                return data.astype(dtype, copy=False)
            out = np.full((height, width), fill, dtype=dtype)
            reproject(
                rasterio.band(ds, src.index), out, src_nodata=ds.nodata,
                dst_transform=Affine(*grid.window_transform(row_off, col_off)),
                dst_crs=grid.crs_wkt, dst_nodata=nodata,
                resampling=Resampling[kernel or kernel_for(src.meta, grid)],
            )
            return out
    except (rasterio.errors.RasterioError, rasterio.errors.CPLE_BaseError) as exc:
        raise InputError(f"{src.path}: reading rows {row_off}-{row_off + height} failed "
                         f"({str(exc).splitlines()[0][:120]}): the file is truncated or corrupt; "
                         "download or export it again") from None
