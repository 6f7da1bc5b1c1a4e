"""Mosaics of any size built from the real Sentinel-2 crop, as GDAL VRTs (no copies)."""

from __future__ import annotations

from pathlib import Path
from xml.sax.saxutils import escape

import rasterio

BANDS = ("B02", "B03", "B04", "B08")  # the 10 m bands


def build_mosaic(src_dir: Path, out_dir: Path, size: int) -> Path:
    """A folder of per-band VRTs tiling the crop to ``size`` x ``size`` pixels."""
    folder = out_dir / f"S2_MOSAIC_{size}"
    folder.mkdir(parents=True, exist_ok=True)
    for band in BANDS:
        src = src_dir / f"s2_{band}.jp2"
        with rasterio.open(src) as ds:
            h, w, t, crs = ds.height, ds.width, ds.transform, ds.crs.to_wkt()
        tiles = []
        for r0 in range(0, size, h):
            for c0 in range(0, size, w):
                hh, ww = min(h, size - r0), min(w, size - c0)
                tiles.append(
                    f"<SimpleSource><SourceFilename relativeToVRT=\"0\">{src}</SourceFilename>"
                    f"<SourceBand>1</SourceBand><SrcRect xOff=\"0\" yOff=\"0\" xSize=\"{ww}\" "
                    f"ySize=\"{hh}\"/><DstRect xOff=\"{c0}\" yOff=\"{r0}\" xSize=\"{ww}\" "
                    f"ySize=\"{hh}\"/></SimpleSource>")
        gt = f"{t.c}, {t.a}, 0, {t.f}, 0, {t.e}"
        srs = escape(crs, {'"': "&quot;"})
        vrt = (f"<VRTDataset rasterXSize=\"{size}\" rasterYSize=\"{size}\"><SRS>{srs}</SRS>"
               f"<GeoTransform>{gt}</GeoTransform><VRTRasterBand dataType=\"UInt16\" band=\"1\">"
               + "".join(tiles) + "</VRTRasterBand></VRTDataset>")
        (folder / f"S2_MOSAIC_{size}_{band}.vrt").write_text(vrt)
    return folder
