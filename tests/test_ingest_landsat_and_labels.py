"""Landsat-8 with its QA band, real JP2 bands, and raster / polygon labels."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
import rioxarray  # noqa: F401 - registers the .rio accessor
from affine import Affine
from rasterio.enums import Resampling
from rasterio.warp import reproject

from chunkstore import LABEL_NODATA, open_scene, read_item, scene_key
from ingest import ingest


def test_landsat_bands_and_qa_equal_source(s3_store, client, landsat_dir):
    (r,) = ingest([str(landsat_dir)], "l8", s3_store, client, shard=256, chunk=128,
                  progress=False)
    assert r["shape"] == [8, 603, 627] and r["shards"] == 9
    ds = open_scene(s3_store, scene_key("l8", r["item"]), mask_and_scale=False)
    assert list(ds["band"].values) == ["coastal", "blue", "green", "red", "nir08", "swir16",
                                       "swir22", "cirrus"]
    for band, name in (("B2", "blue"), ("B5", "nir08"), ("B9", "cirrus")):
        with rasterio.open(landsat_dir / f"l8_{band}.tif") as src:
            np.testing.assert_array_equal(ds["reflectance"].sel(band=name).values, src.read(1))
            t, crs = src.transform, src.crs
    with rasterio.open(landsat_dir / "l8_BQA.tif") as src:
        np.testing.assert_array_equal(ds["qa"].values, src.read(1))
    assert ds["qa"].dtype == np.uint16
    assert ds.rio.crs == crs and ds["reflectance"].rio.transform() == t
    item = read_item(s3_store, "l8", r["item"])
    assert item["properties"]["proj:code"] == "EPSG:32616"
    assert item["assets"]["zarr"]["raster:bands"][0]["scale"] == 2e-5
    assert item["assets"]["zarr"]["raster:bands"][0]["offset"] == -0.1
    decoded = open_scene(s3_store, scene_key("l8", r["item"]))["reflectance"]
    with rasterio.open(landsat_dir / "l8_B4.tif") as src:
        dn = src.read(1, window=((10, 11), (20, 21)))[0, 0]
    assert decoded.sel(band="red").values[10, 20] == pytest.approx(dn * 2e-5 - 0.1, rel=1e-6)


def test_landsat_pan_band_on_request_sets_a_15m_grid(s3_store, client, landsat_dir):
    (r,) = ingest([str(landsat_dir)], "l8pan", s3_store, client, bands=["pan", "red"],
                  shard=512, chunk=256, progress=False)
    assert r["shape"] == [2, 1207, 1254]
    ds = open_scene(s3_store, scene_key("l8pan", r["item"]), mask_and_scale=False)
    with rasterio.open(landsat_dir / "l8_B8.tif") as src:
        np.testing.assert_array_equal(ds["reflectance"].sel(band="pan").values, src.read(1))


def test_real_jp2_bands_ingest_exactly(tmp_path, s3_store, client, s2_dir):
    folder = tmp_path / "S2B_MSIL1C_20210704T155819_N0301_R097_T18SVG"
    folder.mkdir()
    for band in ("B02", "B03", "B11"):
        with rasterio.open(s2_dir / f"s2_{band}.jp2") as src:
            prof = src.profile | {"driver": "JP2OpenJPEG", "QUALITY": 100, "REVERSIBLE": True}
            prof.pop("blockxsize", None), prof.pop("blockysize", None), prof.pop("tiled", None)
            with rasterio.open(folder / f"T18SVG_20210704T155819_{band}.jp2", "w", **prof) as d:
                d.write(src.read())
    with rasterio.open(folder / "T18SVG_20210704T155819_B02.jp2") as chk:
        assert chk.driver == "JP2OpenJPEG"
    (r,) = ingest([str(folder)], "jp2", s3_store, client, shard=1024, chunk=256, progress=False)
    assert r["item"] == "T18SVG_20210704T155819"
    ds = open_scene(s3_store, scene_key("jp2", r["item"]), mask_and_scale=False)
    with rasterio.open(s2_dir / "s2_B03.jp2") as src:
        np.testing.assert_array_equal(ds["reflectance"].sel(band="green").values, src.read(1))
    item = read_item(s3_store, "jp2", r["item"])
    assert item["properties"]["datetime"].startswith("2021-07-04T15:58:19")
    assert item["properties"]["platform"] == "sentinel-2b"


@pytest.fixture
def coarse_label(tmp_path, s2_dir):
    """A 30 m class raster over the Sentinel-2 crop, classes from its real NIR/red ratio."""
    with rasterio.open(s2_dir / "s2_B08.jp2") as nir, rasterio.open(s2_dir / "s2_B04.jp2") as red:
        ndvi = (nir.read(1).astype(float) - red.read(1)) / (nir.read(1) + red.read(1) + 1e-6)
        t, crs = nir.transform, nir.crs
    h, w = ndvi.shape[0] // 3, ndvi.shape[1] // 3
    coarse = ndvi[: h * 3, : w * 3].reshape(h, 3, w, 3).mean(axis=(1, 3))
    classes = np.digitize(coarse, [0.2, 0.5]).astype(np.uint8)  # 0 bare, 1 sparse, 2 dense
    classes[:5, :5] = 255  # unlabelled corner
    path = tmp_path / "ndvi_classes.tif"
    with rasterio.open(path, "w", driver="GTiff", width=w, height=h, count=1, dtype="uint8",
                       crs=crs, transform=t @ Affine.scale(3), nodata=255) as dst:
        dst.write(classes, 1)
    return path


def test_raster_label_and_histogram(s3_store, client, s2_dir, coarse_label):
    (r,) = ingest([str(s2_dir)], "lab", s3_store, client, bands=["blue", "red", "nir"],
                  labels=str(coarse_label), classes=["bare", "sparse", "dense"], shard=512,
                  chunk=128, progress=False)
    ds = open_scene(s3_store, scene_key("lab", r["item"]), mask_and_scale=False)
    label = ds["label"].values
    assert label.dtype == np.uint8 and ds["label"].attrs["classes"] == ["bare", "sparse", "dense"]
    expect = np.full(label.shape, LABEL_NODATA, dtype=np.uint8)
    with rasterio.open(coarse_label) as src:
        reproject(rasterio.band(src, 1), expect, dst_transform=ds.rio.transform(),
                  dst_crs=ds.rio.crs, dst_nodata=LABEL_NODATA, resampling=Resampling.nearest)
    np.testing.assert_array_equal(label, expect)
    assert set(np.unique(label)) == {0, 1, 2, 255}
    hist = ds["label_histogram"].values
    assert hist.shape == (4, 4, 4, 4, 3)
    for sy, sx, iy, ix in [(0, 0, 0, 0), (1, 2, 3, 1), (3, 3, 3, 0), (2, 1, 2, 2)]:
        y0, x0 = sy * 512 + iy * 128, sx * 512 + ix * 128
        block = label[y0:y0 + 128, x0:x0 + 128]
        for k in range(3):
            assert hist[sy, sx, iy, ix, k] == (block == k).sum()
    assert hist.sum() == (label != 255).sum()
    item = read_item(s3_store, "lab", r["item"])
    assert item["properties"]["satchunk:label_classes"] == ["bare", "sparse", "dense"]


def test_polygon_labels_are_rasterized(tmp_path, s3_store, client, s2_dir):
    from pyproj import Transformer

    with rasterio.open(s2_dir / "s2_B02.jp2") as src:
        t = src.transform
    tr = Transformer.from_crs("EPSG:32618", "EPSG:4326", always_xy=True)

    def poly(c0, r0, c1, r1):
        ring = [t @ (c0, r0), t @ (c1, r0), t @ (c1, r1), t @ (c0, r1), t @ (c0, r0)]
        return [list(tr.transform(x, y)) for x, y in ring]

    fc = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"landcover": "water"},
         "geometry": {"type": "Polygon", "coordinates": [poly(100, 100, 600, 400)]}},
        {"type": "Feature", "properties": {"landcover": "forest"},
         "geometry": {"type": "Polygon", "coordinates": [poly(900, 1200, 1500, 1800)]}},
    ]}
    path = tmp_path / "labels.geojson"
    path.write_text(json.dumps(fc))
    (r,) = ingest([str(s2_dir)], "poly", s3_store, client, bands=["red"], labels=str(path),
                  label_field="landcover", shard=512, chunk=256, progress=False)
    ds = open_scene(s3_store, scene_key("poly", r["item"]), mask_and_scale=False)
    label = ds["label"].values
    assert ds["label"].attrs["classes"] == ["forest", "water"]
    assert (label[110:390, 110:590] == 1).all()  # water, spans two shards
    assert (label[1210:1790, 910:1490] == 0).all()  # forest
    assert (label[:90, :] == 255).all() and (label[450:1150, :] == 255).all()
    hist = ds["label_histogram"].values
    assert hist[..., 1].sum() == (label == 1).sum()
    assert 140_000 < (label == 1).sum() < 160_000  # ~500 x 300 px


def test_dataset_folder_pairs_masks_by_stem(tmp_path, s3_store, client, landsat_dir):
    img, msk = tmp_path / "ds" / "images", tmp_path / "ds" / "masks"
    img.mkdir(parents=True), msk.mkdir(parents=True)
    with rasterio.open(landsat_dir / "l8_B2.tif") as b2, \
            rasterio.open(landsat_dir / "l8_B3.tif") as b3, \
            rasterio.open(landsat_dir / "l8_BQA.tif") as qa:
        prof = b2.profile | {"count": 2}
        for name, rows in (("tile_a", slice(0, 300)), ("tile_b", slice(300, 600))):
            win = ((rows.start, rows.stop), (0, 627))
            t = b2.window_transform(win)
            with rasterio.open(img / f"{name}.tif", "w", **(prof | {"height": 300,
                                                                    "transform": t})) as d:
                d.write(np.stack([b2.read(1, window=win), b3.read(1, window=win)]))
            cloud = ((qa.read(1, window=win) >> 14) >= 2).astype(np.uint8)
            mp = prof | {"count": 1, "dtype": "uint8", "height": 300, "transform": t}
            with rasterio.open(msk / f"{name}.tif", "w", **mp) as d:
                d.write(cloud, 1)
    res = ingest([str(tmp_path / "ds")], "dataset", s3_store, client, sensor="landsat",
                 bands=["blue", "green"], shard=256, chunk=128, progress=False)
    assert [r["item"] for r in res] == ["tile_a", "tile_b"]
    ds = open_scene(s3_store, scene_key("dataset", "tile_b"), mask_and_scale=False)
    with rasterio.open(msk / "tile_b.tif") as m:
        np.testing.assert_array_equal(ds["label"].values, m.read(1))
