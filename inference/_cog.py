"""``export``: a mask product as a Cloud-Optimized GeoTIFF, streamed shard by shard.

``class`` has nodata 255 and the class colour table; the other products carry an
internal mask band (from ``class``), so nodata is never read as probability 0.

Shards are read from the store one ahead of the writer into a tiled GeoTIFF next
to the output, which GDAL's COG driver then rewrites with overviews. Memory is
two shards plus GDAL's block cache, however big the scene. The output appears
under its name only when complete.
"""

from __future__ import annotations

import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from chunkstore import InputError, Store

from ._maskref import MaskRef, open_mask_array
from ._outfile import check_output, staged

BLOCK = 512
_RESAMPLING = {"class": "MODE", "probability": "AVERAGE", "entropy": "AVERAGE",
               "margin": "AVERAGE"}


def export_cog(store: Store, ref: MaskRef, out: str | Path, product: str = "class",
               progress: bool = True) -> dict[str, Any]:
    """Write ``product`` of the mask to ``out`` (.tif) as a COG with overviews."""
    import rasterio
    from rasterio.crs import CRS
    from rasterio.errors import RasterioError
    from rasterio.shutil import copy as rio_copy
    from rasterio.transform import Affine

    t0 = time.perf_counter()
    out = Path(out)
    if out.suffix.lower() not in (".tif", ".tiff"):
        raise InputError(f"{out}: a COG export needs a .tif output path")
    check_output(out)
    if product not in ref.products:
        raise InputError(f"the mask of {ref.model_id} on {ref.item} has no {product!r} product "
                         f"(it has {', '.join(ref.products)}): re-run predict with "
                         f"--products class,{product}")
    arr = open_mask_array(store, ref, product)
    g = ref.grid
    count = len(ref.classes) if product == "probability" else 1
    stage = out.with_name(f".{out.stem}.tiled.tif")
    profile = {"driver": "GTiff", "width": g.width, "height": g.height, "count": count,
               "dtype": "uint8", "crs": CRS.from_wkt(ref.crs_wkt),
               "transform": Affine(*ref.transform), "tiled": True, "blockxsize": BLOCK,
               "blockysize": BLOCK, "compress": "DEFLATE", "zlevel": 1, "bigtiff": "IF_SAFER",
               "nodata": 255 if product == "class" else None}

    cls = open_mask_array(store, ref, "class") if product != "class" else None

    def read(shard: tuple[int, int]) -> tuple[tuple[int, ...], np.ndarray, np.ndarray | None]:
        r0, c0, h, w = g.window(*shard)
        block = arr[..., r0:r0 + h, c0:c0 + w]
        valid = None  # other products store 0 at nodata: a mask band says where
        if cls is not None:
            valid = np.where(cls[r0:r0 + h, c0:c0 + w] == 255, 0, 255).astype(np.uint8)
        return (r0, c0, h, w), block.reshape(count, h, w), valid

    try:
        with staged(out) as partial:
            try:
                _write_stage(stage, profile, ref, product, g, read, progress)
                with rasterio.Env(GDAL_CACHEMAX=256, GDAL_NUM_THREADS="ALL_CPUS"):
                    rio_copy(stage, partial, driver="COG", COMPRESS="DEFLATE",
                             BLOCKSIZE=BLOCK, OVERVIEW_RESAMPLING=_RESAMPLING[product],
                             BIGTIFF="IF_SAFER", PREDICTOR="NO" if product == "class" else "YES")
            except RasterioError as exc:
                raise InputError(f"{out}: cannot write it ({str(exc).splitlines()[0]})") from None
    finally:
        stage.unlink(missing_ok=True)
    with rasterio.open(out) as src:
        overviews = src.overviews(1)
    return {"collection": ref.collection, "item": ref.item, "model_id": ref.model_id,
            "product": product, "out": str(out), "shape": [count, g.height, g.width],
            "overviews": overviews, "bytes": out.stat().st_size,
            "seconds": round(time.perf_counter() - t0, 3)}


def _write_stage(stage: Path, profile: dict[str, Any], ref: MaskRef, product: str, g: Any,
                 read: Any, progress: bool) -> None:
    """Shards into a tiled GeoTIFF; the next shard is read while one is written."""
    import rasterio
    from rasterio.windows import Window
    from tqdm import tqdm

    shards = list(g.shards())
    with rasterio.Env(GDAL_CACHEMAX=256, GDAL_TIFF_INTERNAL_MASK=True), \
            rasterio.open(stage, "w", **profile) as dst, ThreadPoolExecutor(1) as pool, \
            tqdm(total=len(shards), unit="shard", desc=f"export {product}",
                 disable=not progress) as bar:
        _describe(dst, ref, product)

        def write(done: Any) -> None:
            (r0, c0, h, w), block, valid = done.result()
            dst.write(block, window=Window(c0, r0, w, h))
            if valid is not None:
                dst.write_mask(valid, window=Window(c0, r0, w, h))
            bar.update(1)

        ahead: deque = deque()
        for shard in shards:
            ahead.append(pool.submit(read, shard))
            if len(ahead) == 2:
                write(ahead.popleft())
        while ahead:
            write(ahead.popleft())


def _describe(dst: Any, ref: MaskRef, product: str) -> None:
    """Band names, the class colour table, scale and provenance tags."""
    dst.update_tags(item=ref.item, collection=ref.collection, model_id=ref.model_id,
                    product=product, classes=",".join(ref.classes))
    if product == "class":
        dst.set_band_description(1, "class")
        dst.write_colormap(1, {i: _rgb(c) for i, c in enumerate(ref.colors)}
                           | {255: (0, 0, 0, 0)})
        dst.update_tags(1, **{f"CLASS_{i}": n for i, n in enumerate(ref.classes)})
        return
    names = list(ref.classes) if product == "probability" else [product]
    for b, name in enumerate(names, start=1):
        dst.set_band_description(b, f"{product} {name}" if product == "probability" else name)
    dst.scales = [1 / 255] * len(names)
    dst.offsets = [0.0] * len(names)


def _rgb(color: str) -> tuple[int, int, int, int]:
    c = color.lstrip("#")
    return int(c[0:2], 16), int(c[2:4], 16), int(c[4:6], 16), 255
