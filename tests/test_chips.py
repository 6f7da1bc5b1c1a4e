"""predict over a collection of chips (scenes of one shard, as datasets of 120-512 px
tiles come) against the embedded S3 server: chips go several to a task, each mask
equals the whole-image result of the model on the chip, each is committed as a derived
STAC item, the catalog is refreshed once, and a re-run writes nothing."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rioxarray  # noqa: F401  (registers .rio)
import xarray as xr

import chunkstore
import inference._job as job_module
from benchmarks.pipeline import cut_chips
from chunkstore import list_items, list_runs, mask_key, open_scene, scene_key
from inference import Radiometry, predict_scene
from models import load_model
from satchunk.cli import main

MODEL = "ukis-csmask:4b"
BANDS = ["blue", "green", "red", "nir"]
FILES = ["s2_B02.jp2", "s2_B03.jp2", "s2_B04.jp2", "s2_B08.jp2"]
# (row, col, height, width) in the 10 m grid of the real Sentinel-2 sample: chips of
# the sizes such datasets have, one not square, one not a multiple of the inner chunk
CUTS = [(0, 0, 240, 240), (240, 240, 240, 240), (500, 100, 176, 200), (700, 700, 256, 256),
        (300, 900, 120, 120)]


@pytest.fixture
def cli_env(monkeypatch, s3_env):
    for k, v in s3_env.items():
        monkeypatch.setenv(k, v)
    return s3_env


def _open(store, key):
    return xr.open_zarr(store.zarr_store(key, read_only=True), consolidated=False,
                        zarr_format=3)


def test_a_collection_of_chips(capsys, cli_env, s3_store, s2_dir, tmp_path, monkeypatch):
    chips = cut_chips([s2_dir / f for f in FILES], CUTS, tmp_path)
    assert main(["ingest", *chips, "--collection", "chips", "--sensor", "sentinel-2",
                 "--bands", ",".join(BANDS), "--datetime", "2023-06-01T10:00:00Z",
                 "--json"]) == 0
    items = [r["item"] for r in json.loads(capsys.readouterr().out)]
    assert len(items) == len(CUTS)

    tasks = []  # the chip tasks the job hands the cluster
    real = chunkstore.run_shard_tasks

    def counted(client, fn, batch, *args, **kwargs):
        tasks.append(len(batch))
        return real(client, fn, batch, *args, **kwargs)

    monkeypatch.setattr(job_module, "run_shard_tasks", counted)
    assert main(["predict", "--collection", "chips", "--model", MODEL, "--products",
                 "class,probability", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert sorted(r["item"] for r in out) == sorted(items)
    assert {r["status"] for r in out} == {"predicted"}
    assert tasks == [1]  # five chips of <= 256^2: one task, not five graphs
    model_id = out[0]["model_id"]

    adapter = load_model(MODEL)
    for item in items:
        scene = open_scene(s3_store, scene_key("chips", item))
        mask = _open(s3_store, mask_key("chips", item, model_id))
        assert mask["class"].rio.crs == scene.reflectance.rio.crs
        assert mask["class"].rio.transform() == scene.reflectance.rio.transform()
        assert mask["class"].shape == scene.reflectance.shape[1:]
        # the model on the whole chip in memory
        dn = open_scene(s3_store, scene_key("chips", item), mask_and_scale=False)
        raw = dn.reflectance.sel(band=BANDS).values
        enc = dn.reflectance.attrs
        rad = Radiometry(enc.get("scale_factor", 1e-4), enc.get("add_offset", 0.0),
                         enc.get("_FillValue", 0))
        probs, valid = (t.numpy() for t in predict_scene(raw, BANDS, adapter, rad))
        want = np.where(valid, probs.argmax(0), 255)
        got = mask["class"].values
        assert np.mean(got == want) >= 0.9999, item
        assert valid.mean() > 0.5
        q = np.rint(probs * 255).astype(np.int16)
        q[:, ~valid] = 0
        stored = mask["probability"].values
        stored = (np.rint(stored * 255) if stored.dtype.kind == "f" else stored).astype(np.int16)
        assert np.abs(q - stored).max() <= 1, item

    # STAC: one derived item per chip, the collection refreshed with all of them
    listed = {i["id"]: i for i in list_items(s3_store, "chips")}
    for item in items:
        mitem = listed[f"{item}__{model_id}"]
        assert any(link["rel"] == "derived_from" and item in link["href"]
                   for link in mitem["links"])
        assert mitem["bbox"] == listed[item]["bbox"]
    coll = json.loads(s3_store.read_bytes("stac/chips/collection.json"))
    linked = {link["href"] for link in coll["links"] if link["rel"] == "item"}
    assert linked == {f"./{i}/{i}.json" for i in listed}  # scenes and masks
    assert s3_store.list("locks") == [] and s3_store.list("scratch") == []
    run = [r for r in list_runs(s3_store) if r["kind"] == "predict"][-1]
    assert run["status"] == "succeeded"
    assert sorted(r["item"] for r in run["items"]) == sorted(items)

    # a second run finds every chip committed and writes nothing
    before = {k: s3_store.etag(k) for k in s3_store.list("masks")}
    assert main(["predict", "--collection", "chips", "--model", MODEL, "--products",
                 "class,probability", "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert {r["status"] for r in again} == {"exists"}
    assert {r["written_shards"] for r in again} == {0}
    assert {k: s3_store.etag(k) for k in s3_store.list("masks")} == before

    # another request on a chip (other products) replaces its mask, not adds to it
    mkey = mask_key("chips", items[0], model_id)
    first = _open(s3_store, mkey)["class"].values
    assert main(["predict", items[0], "--collection", "chips", "--model", MODEL,
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["status"] == "predicted"
    assert not any(k.startswith(f"{mkey}/probability/") for k in s3_store.list(mkey))
    np.testing.assert_array_equal(_open(s3_store, mkey)["class"].values, first)
