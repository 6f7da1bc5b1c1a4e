"""export (COG) and vectorize on a real predicted mask in the embedded S3 server:
georeferencing, pixel values, overviews, and polygons whole across shard borders."""

from __future__ import annotations

import json

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import rioxarray  # noqa: F401  (registers .rio)
import xarray as xr
from rasterio import features
from scipy import ndimage

from chunkstore import list_runs, mask_key, open_scene, scene_key
from satchunk.cli import main

ITEM = "small_full_data_cloudy"
MODEL = "ukis-csmask-6b-l1c-1.0.0-6BL1C"


@pytest.fixture(scope="module")
def predicted(s3_server, tmp_path_factory, landsat_dir):
    """The cloudy Landsat crop, with a fill corner as at a real scene edge, ingested
    with 256 px shards and predicted with class and probability products (module
    scope: predicted once)."""
    scene = tmp_path_factory.mktemp("l8") / ITEM
    scene.mkdir()
    for src in landsat_dir.glob("*.tif"):
        with rasterio.open(src) as r:
            data, prof = r.read(), r.profile
        data[:, : r.height // 6, : r.width // 5] = 0  # Landsat fill
        with rasterio.open(scene / src.name, "w", **prof) as dst:
            dst.write(data)
    env = s3_server.env("test-exports")
    mp = pytest.MonkeyPatch()
    for k, v in env.items():
        mp.setenv(k, v)
    assert main(["ingest", str(scene), "--collection", "l8", "--shard", "256",
                 "--json"]) == 0
    assert main(["predict", ITEM, "--model", "ukis-csmask", "--products",
                 "class,probability", "--json"]) == 0
    from chunkstore import open_store

    store = open_store(env["SATCHUNK_STORE"], env=env)
    mask = xr.open_zarr(store.zarr_store(mask_key("l8", ITEM, MODEL), read_only=True),
                        consolidated=False, zarr_format=3, mask_and_scale=False)
    yield store, mask.load()  # as stored: class uint8 with 255 = nodata, probability x 255
    mp.undo()


@pytest.fixture
def env(predicted, s3_server, monkeypatch):
    for k, v in s3_server.env("test-exports").items():
        monkeypatch.setenv(k, v)
    return predicted


def test_cog_export_keeps_georeferencing_values_and_has_overviews(env, tmp_path, capsys):
    store, mask = env
    out = tmp_path / "mask.tif"
    capsys.readouterr()
    assert main(["export", ITEM, str(out), "--model-id", MODEL, "--format", "cog",
                 "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["out"] == str(out) and res["product"] == "class"
    scene = open_scene(store, scene_key("l8", ITEM)).reflectance
    with rasterio.open(out) as src:
        assert src.crs == scene.rio.crs
        assert src.transform == scene.rio.transform()
        assert (src.height, src.width) == mask["class"].shape
        assert src.nodata == 255 and src.dtypes == ("uint8",)
        assert src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        assert src.block_shapes == [(512, 512)] or min(src.shape) < 512
        assert src.overviews(1), "a COG export has overviews"
        assert src.colormap(1)[1][:3] != src.colormap(1)[0][:3]
        assert src.tags(1)["CLASS_1"] == "cloud"
        assert np.array_equal(src.read(1), mask["class"].values)
        # overview level 1 is a mode of 2x2 pixels: mostly the same classes
        ov = src.read(1, out_shape=(src.height // 2, src.width // 2))
        full = mask["class"].values[: ov.shape[0] * 2:2, : ov.shape[1] * 2:2]
        assert np.mean(ov == full) > 0.9
    assert not list(tmp_path.glob(".*")), "no staging files left"

    prob = tmp_path / "prob.tif"
    assert main(["export", ITEM, str(prob), "--model-id", MODEL, "--product",
                 "probability"]) == 0
    with rasterio.open(prob) as src:
        assert src.count == 3 and src.scales == (1 / 255,) * 3
        assert src.descriptions[1] == "probability cloud"
        assert np.array_equal(src.read(), mask["probability"].values)
        # nodata is masked (internal mask band from the class map), not read as 0
        nodata = mask["class"].values == 255
        assert nodata.sum() >= (603 // 6) * (627 // 5)
        assert np.array_equal(src.read_masks(1) == 0, nodata)
    runs = [r for r in list_runs(store) if r["kind"] == "export"]
    assert runs and runs[-1]["status"] == "succeeded"


def test_vectorize_polygons_are_whole_across_shards_and_rasterize_back(env, tmp_path, capsys):
    store, mask = env
    cls = mask["class"].values
    out = tmp_path / "mask.parquet"
    capsys.readouterr()
    assert main(["vectorize", ITEM, str(out), "--model-id", MODEL, "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    gdf = gpd.read_parquet(out)
    assert res["polygons"] == len(gdf) > 10
    scene = open_scene(store, scene_key("l8", ITEM)).reflectance
    assert gdf.crs == scene.rio.crs
    # one polygon per 4-connected same-class component of the whole map: the
    # 256 px shard borders cut none of them
    comps = {c: ndimage.label(cls == c)[1] for c in range(3)}
    assert gdf["class"].value_counts().to_dict() == {c: n for c, n in comps.items() if n}
    assert gdf.geometry.is_valid.all() and (gdf.geom_type == "Polygon").all()
    assert set(gdf["class_name"]) <= {"clear", "cloud", "cloud_shadow"}
    # rasterized back onto the scene grid, the polygons are the class map
    back = features.rasterize(zip(gdf.geometry, gdf["class"].astype(int), strict=True),
                              out_shape=cls.shape, transform=scene.rio.transform(),
                              fill=255, dtype="uint8")
    assert np.array_equal(back, cls)
    assert np.allclose(gdf["area_m2"], gdf["pixels"] * 900.0)
    assert np.allclose(gdf.geometry.area, gdf["area_m2"])
    # mean probability of the biggest cloud polygon, from the stored probabilities
    big = gdf[gdf["class"] == 1].iloc[0]
    lab, _ = ndimage.label(cls == 1)
    inside = back == 1
    r, c = np.argwhere(inside & (lab == np.bincount(lab[lab > 0]).argmax()))[0]
    sel = lab == lab[r, c]
    want = mask["probability"].values[1][sel].mean() / 255
    assert big["pixels"] == sel.sum() and big["mean_probability"] == pytest.approx(want)
    rows, cols = np.nonzero(sel)
    assert rows.min() // 256 < rows.max() // 256 and cols.min() // 256 < cols.max() // 256

    gpkg = tmp_path / "mask.gpkg"
    assert main(["vectorize", ITEM, str(gpkg), "--model-id", MODEL]) == 0
    assert len(gpd.read_file(gpkg)) == len(gdf)
    assert not list(tmp_path.glob(".*")), "no partial files left"

    gj = tmp_path / "mask.geojson"
    assert main(["vectorize", ITEM, str(gj), "--model-id", MODEL]) == 0
    wgs = gpd.read_file(gj)
    assert wgs.crs.to_epsg() == 4326 and len(wgs) == len(gdf)
    bbox = json.loads(store.read_bytes(f"stac/l8/{ITEM}/{ITEM}.json"))["bbox"]
    x0, y0, x1, y1 = wgs.total_bounds
    assert bbox[0] - 1e-6 <= x0 and x1 <= bbox[2] + 1e-6
    assert bbox[1] - 1e-6 <= y0 and y1 <= bbox[3] + 1e-6


@pytest.mark.parametrize("args, message", [
    (["export", ITEM, "X/out.tif", "--model-id", "nope-1"], "no finished mask of model"),
    (["export", ITEM, "OUT/out.tif", "--model-id", MODEL, "--product", "entropy"],
     "has no 'entropy' product"),
    (["export", ITEM, "OUT/out.png", "--model-id", MODEL], "needs a .tif output"),
    (["export", ITEM, "OUT/out.tif", "--model-id", MODEL, "--format", "png"], "--format"),
    (["vectorize", ITEM, "OUT/out.shp", "--model-id", MODEL], ".parquet, .gpkg or .geojson"),
    (["vectorize", "no-such-item", "OUT/out.parquet", "--model-id", MODEL], "is not in"),
    (["vectorize", ITEM, "OUT", "--model-id", MODEL], ".parquet, .gpkg or .geojson"),
    (["export", ITEM, "OUT/", "--model-id", MODEL], "needs a .tif output"),
])
def test_bad_export_requests_fail_in_one_line(env, tmp_path, capsys, args, message):
    (tmp_path / "OUT").mkdir()
    args = [a.replace("OUT/", f"{tmp_path}/OUT/").replace("X/", f"{tmp_path}/") for a in args]
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err
    assert not any((tmp_path / "OUT").iterdir())
