"""predict on a collection of many small scenes (chips: scenes of one shard) against
the embedded S3 server: real 4-band chips cut from the Sentinel-2 sample as multi-band
GeoTIFFs, ingested into one collection and predicted with the real ``ukis-csmask:4b``.
Chips go several to a Dask task and each is committed whole there; every mask equals
the model's whole-image result (nodata where any model band is), carries its chip's
georeferencing and a derived STAC item; the catalog is refreshed once, at the end, with
every item; a re-run writes nothing and a chip committed before is left as it is."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import rioxarray  # noqa: F401  (registers .rio)
import xarray as xr
from rasterio.windows import Window
from rasterio.windows import transform as window_transform

import inference._job as job_module
from benchmarks.pipeline import cut_chips
from chunkstore import list_items, list_runs, mask_key, open_scene, scene_key
from inference import (
    Radiometry,
    check_items,
    load_checked,
    model_ref,
    predict_items,
    predict_scene,
    worker_threads,
)
from satchunk.cli import main

MODEL = "ukis-csmask:4b"
MODEL_ID = "ukis-csmask-4b-l1c-1.0.0-4BL1C"
BANDS = ("blue", "green", "red", "nir")  # the 4b model's inputs, in its order
FILES = ("s2_B02.jp2", "s2_B03.jp2", "s2_B04.jp2", "s2_B08.jp2")
# name: (row, col, height, width) in the 10 m grid (1947 x 1933 px) of the sample
CUTS = {
    "chip_a": (0, 0, 240, 240),
    "chip_b": (240, 240, 240, 240),
    "chip_c": (480, 1200, 240, 240),
    "chip_d": (1200, 300, 240, 240),
    "chip_e": (700, 1500, 176, 200),  # not square, not a multiple of the inner chunk
    "chip_f": (1600, 900, 200, 176),
}
NODATA_CHIP = "chip_b"  # its top-left corner is fill in every band, a strip of nir too
HOLE, STRIP = (slice(0, 30), slice(0, 50)), (slice(100, 110), slice(20, 200))
DATETIME = "2021-06-01T10:00:00Z"  # before baseline 04.00: no DN offset


@pytest.fixture
def cli_env(monkeypatch, s3_env):
    for k, v in s3_env.items():
        monkeypatch.setenv(k, v)
    return s3_env


def _cut_chips(s2_dir, out):
    """4-band uint16 GeoTIFFs ``out/<name>.tif`` of the windows of the sample's 10 m
    bands, each with its window's CRS and transform and 0 as nodata; then the hole and
    the strip of :data:`NODATA_CHIP` set to fill."""
    paths = []
    for name, p in zip(CUTS, cut_chips([s2_dir / f for f in FILES], list(CUTS.values()), out),
                       strict=True):
        named = Path(p).rename(out / f"{name}.tif")
        with rasterio.open(named, "r+") as ds:
            data = ds.read()
            assert (data > 0).all()  # real data all over, before any hole is cut
            if name == NODATA_CHIP:
                data[(slice(None), *HOLE)] = 0
                data[(3, *STRIP)] = 0
                ds.write(data)
        paths.append(str(named))
    return paths


def _ingest(capsys, paths, scheduler):
    capsys.readouterr()
    assert main(["ingest", *paths, "--collection", "chips", "--sensor", "sentinel-2",
                 "--bands", ",".join(BANDS), "--datetime", DATETIME, "--scheduler",
                 scheduler, "--json"]) == 0
    return sorted(r["item"] for r in json.loads(capsys.readouterr().out))


def _predict_cli(capsys, scheduler):
    assert main(["predict", "--collection", "chips", "--model", MODEL, "--products",
                 "class,probability", "--scheduler", scheduler, "--json"]) == 0
    return {r["item"]: r for r in json.loads(capsys.readouterr().out)}


def _open(store, key):
    return xr.open_zarr(store.zarr_store(key, read_only=True), consolidated=False,
                        zarr_format=3)


def _reference(store, item, adapter):
    """The model on the whole chip in memory, from its stored DN: (probs, valid)."""
    dn = open_scene(store, scene_key("chips", item), mask_and_scale=False)
    enc = dn.reflectance.attrs
    rad = Radiometry(enc.get("scale_factor", 1e-4), enc.get("add_offset", 0.0),
                     enc.get("_FillValue", 0))
    raw = dn.reflectance.sel(band=list(BANDS)).values
    probs, valid = (t.numpy() for t in predict_scene(raw, list(BANDS), adapter, rad))
    return probs, valid


def _objects(store, prefix):
    """Every object under ``prefix`` with its tag."""
    return {k: store.etag(k) for k in store.list(prefix)}


def _counting_tasks(monkeypatch):
    """Record the chips of each task the job hands the cluster (item ids per task)."""
    tasks = []
    real = job_module.run_shard_tasks

    def counted(client, fn, batch, *args, **kwargs):
        tasks.extend([c.scene["id"] for c, _ in t.chips] for t in batch)
        return real(client, fn, batch, *args, **kwargs)

    monkeypatch.setattr(job_module, "run_shard_tasks", counted)
    return tasks


def test_a_collection_of_chips_over_the_cli(capsys, cli_env, s3_store, s2_dir, tmp_path,
                                            client, monkeypatch):
    scheduler = client.scheduler.address
    items = _ingest(capsys, _cut_chips(s2_dir, tmp_path), scheduler)
    assert items == sorted(CUTS)
    scenes_before = _objects(s3_store, "zarr")

    tasks = _counting_tasks(monkeypatch)
    out = _predict_cli(capsys, scheduler)
    assert sorted(out) == items  # one result per chip
    assert {r["status"] for r in out.values()} == {"predicted"}
    assert {r["model_id"] for r in out.values()} == {MODEL_ID}
    assert {r["written_shards"] for r in out.values()} == {1}
    # several chips to a task: six chips of <= 240^2 px fit one task of a 2048^2 shard's
    assert [sorted(t) for t in tasks] == [items]

    adapter = load_checked(model_ref(MODEL, s3_store), s3_store)
    for item in items:
        mkey = mask_key("chips", item, MODEL_ID)
        assert out[item]["mask"] == s3_store.url(mkey)
        scene = open_scene(s3_store, scene_key("chips", item))
        mask = _open(s3_store, mkey)
        r, c, h, w = CUTS[item]
        # the chip's georeferencing: its CRS, its window's transform, its shape
        assert mask["class"].shape == scene.reflectance.shape[1:] == (h, w)
        assert mask["class"].rio.crs == scene.reflectance.rio.crs
        assert mask["class"].rio.transform() == scene.reflectance.rio.transform()
        with rasterio.open(s2_dir / FILES[0]) as src:
            assert mask["class"].rio.crs == src.crs
            assert mask["class"].rio.transform() == window_transform(Window(c, r, w, h),
                                                                     src.transform)
        assert mask["probability"].shape == (3, h, w)
        assert len(s3_store.list(f"{mkey}/class/c")) == 1  # one shard: one object

        probs, valid = _reference(s3_store, item, adapter)
        want = np.where(valid, probs.argmax(0), 255)
        got = mask["class"].values
        assert np.mean(got == want) >= 0.9999, item
        q = np.rint(probs * 255).astype(np.int16)
        q[:, ~valid] = 0
        stored = mask["probability"].values
        stored = (np.rint(stored * 255) if stored.dtype.kind == "f" else stored)
        assert np.abs(q - stored.astype(np.int16)).max() <= 1, item
        if item == NODATA_CHIP:  # fill in any model band is nodata, and only there
            hole = np.zeros((h, w), bool)
            hole[HOLE] = hole[STRIP] = True
            np.testing.assert_array_equal(valid, ~hole)
            assert (got[hole] == 255).all() and (got[~hole] < 3).all()
            assert (stored[:, hole] == 0).all()
        else:
            assert valid.all() and (got < 3).all(), item

    # STAC: one derived item per chip, linked to its scene, and nothing else new
    listed = {i["id"]: i for i in list_items(s3_store, "chips")}
    assert set(listed) == set(items) | {f"{i}__{MODEL_ID}" for i in items}
    for item in items:
        mitem = listed[f"{item}__{MODEL_ID}"]
        assert mitem["properties"]["satchunk:kind"] == "mask"
        derived = [link["href"] for link in mitem["links"] if link["rel"] == "derived_from"]
        assert len(derived) == 1 and derived[0].endswith(f"{item}/{item}.json")
        assert mitem["bbox"] == listed[item]["bbox"]
        assert mitem["properties"]["mlm:name"] == "ukis-csmask-4b-l1c"
    # the catalog, refreshed at the end of the job, links every scene and mask item
    coll = json.loads(s3_store.read_bytes("stac/chips/collection.json"))
    linked = {link["href"] for link in coll["links"] if link["rel"] == "item"}
    assert linked == {f"./{i}/{i}.json" for i in listed}
    assert s3_store.list("locks") == [] and s3_store.list("scratch") == []
    assert _objects(s3_store, "zarr") == scenes_before  # the scenes are only read
    run = [r for r in list_runs(s3_store) if r["kind"] == "predict"][-1]
    assert run["status"] == "succeeded" and run["model_id"] == MODEL_ID
    assert sorted(r["item"] for r in run["items"]) == items
    assert {r["status"] for r in run["items"]} == {"predicted"}

    # a second run finds every chip committed and writes nothing
    masks, stac = _objects(s3_store, "masks"), _objects(s3_store, "stac")
    again = _predict_cli(capsys, scheduler)
    assert sorted(again) == items
    assert {r["status"] for r in again.values()} == {"exists"}
    assert {r["written_shards"] for r in again.values()} == {0}
    assert _objects(s3_store, "masks") == masks
    assert _objects(s3_store, "stac") == stac  # items, and the refreshed catalog, as they were
    assert s3_store.list("locks") == [] and s3_store.list("scratch") == []
    runs = [r for r in list_runs(s3_store) if r["kind"] == "predict"]
    assert len(runs) == 2 and {r["status"] for r in runs[-1]["items"]} == {"exists"}

    # another request on a chip (other products) replaces its mask, not adds to it
    mkey = mask_key("chips", items[0], MODEL_ID)
    classes = _open(s3_store, mkey)["class"].values
    assert main(["predict", items[0], "--collection", "chips", "--model", MODEL,
                 "--scheduler", scheduler, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["status"] == "predicted"
    assert not any(k.startswith(f"{mkey}/probability/") for k in s3_store.list(mkey))
    np.testing.assert_array_equal(_open(s3_store, mkey)["class"].values, classes)


def test_predict_items_groups_chips_and_refreshes_the_catalog_once(
        capsys, cli_env, s3_store, s2_dir, tmp_path, client, monkeypatch):
    """The library path: a smaller task budget splits the chips over several tasks of
    several chips each, run side by side on the cluster; a chip committed before is
    left as it is; the tasks commit items without touching the catalog, which is
    refreshed once, after every task."""
    scheduler = client.scheduler.address
    items = _ingest(capsys, _cut_chips(s2_dir, tmp_path), scheduler)
    ref = model_ref(MODEL, s3_store)
    adapter = load_checked(ref, s3_store)
    ref = dataclasses.replace(ref, threads=worker_threads(client))

    def checked():
        return check_items(s3_store, items, adapter, "chips",
                           listing=list_items(s3_store, "chips"))

    # one chip first, on its own
    first = items[2]
    [res] = predict_items(s3_store, client, [c for c in checked() if c.scene["id"] == first],
                          ref, adapter, progress=False)
    assert res["status"] == "predicted" and res["written_shards"] == 1
    first_mask = _objects(s3_store, mask_key("chips", first, MODEL_ID))
    first_item = s3_store.etag(f"stac/chips/{first}__{MODEL_ID}/{first}__{MODEL_ID}.json")

    monkeypatch.setattr(job_module, "CHIP_PIXELS", 2 * 240 * 240)
    tasks = _counting_tasks(monkeypatch)
    real_refresh = job_module.refresh_collection
    refreshed, seen_by_tasks = [], []
    real_run = job_module.run_shard_tasks

    def after_tasks(*args, **kwargs):  # what the catalog says once every task has ended
        res = real_run(*args, **kwargs)
        coll = json.loads(s3_store.read_bytes("stac/chips/collection.json"))
        seen_by_tasks.append({link["href"] for link in coll["links"] if link["rel"] == "item"})
        return res

    def refresh(store, collection):
        refreshed.append(collection)
        real_refresh(store, collection)

    monkeypatch.setattr(job_module, "run_shard_tasks", after_tasks)
    monkeypatch.setattr(job_module, "refresh_collection", refresh)
    done = []
    out = predict_items(s3_store, client, checked(), ref, adapter, progress=False,
                        done=done.append)

    assert sorted(r["item"] for r in out) == items and done == out
    status = {r["item"]: r["status"] for r in out}
    assert status == {i: "exists" if i == first else "predicted" for i in items}
    # 2 x 240^2 px a task: the chips in several tasks, most of them holding several
    assert 1 < len(tasks) < len(items)
    assert sorted(i for t in tasks for i in t) == items
    assert max(len(t) for t in tasks) > 1
    grid = {i: CUTS[i][2] * CUTS[i][3] for i in items}
    assert all(len(t) == 1 or sum(grid[i] for i in t) <= 2 * 240 * 240 for t in tasks)
    # the tasks committed their items without refreshing the catalog ...
    assert seen_by_tasks == [{f"./{i}/{i}.json" for i in [*items, f"{first}__{MODEL_ID}"]}]
    # ... which the job then refreshed once
    assert refreshed == ["chips"]
    coll = json.loads(s3_store.read_bytes("stac/chips/collection.json"))
    listed = {i["id"] for i in list_items(s3_store, "chips")}
    assert listed == set(items) | {f"{i}__{MODEL_ID}" for i in items}
    assert {link["href"] for link in coll["links"] if link["rel"] == "item"} == \
        {f"./{i}/{i}.json" for i in listed}
    # the chip committed before is as it was
    assert _objects(s3_store, mask_key("chips", first, MODEL_ID)) == first_mask
    assert s3_store.etag(f"stac/chips/{first}__{MODEL_ID}/{first}__{MODEL_ID}.json") == \
        first_item
    assert s3_store.list("locks") == [] and s3_store.list("scratch") == []
