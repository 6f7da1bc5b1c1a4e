"""Disk full: the temporary directory (TMPDIR, where the local cluster's workers spill
and scratch, and where metadata is rendered) is a tmpfs with two pages left. A job that needs room
there fails with one line that says so, commits nothing and leaves no file behind; a
job that does not, completes."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from joboutput import error_lines

from chunkstore import item_key, open_store, read_item, scene_key

L8_ITEM = "small_full_data_cloudy"


@pytest.fixture
def full_tmpdir(tmp_path):
    d = tmp_path / "full"
    d.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(d)],
                             capture_output=True)
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        fd = os.open(d / "filler", os.O_WRONLY | os.O_CREAT)
        try:
            while True:
                os.write(fd, b"\0" * 4096)
        except OSError:
            pass
        finally:
            os.close(fd)
        # two pages left: enough for Python's check that TMPDIR is writable (a full one
        # is skipped for /tmp), not for what the job writes there: a disk filling up
        os.truncate(d / "filler", (d / "filler").stat().st_size - 2 * 4096)
        yield d
    finally:
        subprocess.run(["umount", "-l", str(d)], check=False)


def _cli(args, env):
    return subprocess.run([sys.executable, "-m", "satchunk", *args], env=env,
                          capture_output=True, text=True, timeout=600)


def test_a_full_temporary_directory_is_one_clear_error_and_leaves_nothing(
        s3_env, landsat_dir, full_tmpdir):
    store = open_store(env=s3_env)
    env = {**os.environ, **s3_env}
    full = {**env, "TMPDIR": str(full_tmpdir)}
    # ingest needs no temporary room: its workers scratch in the full TMPDIR and it
    # completes, with the workers' scratch folder gone afterwards
    ok = _cli(["ingest", str(landsat_dir), "--collection", "l8", "--shard", "256",
               "--chunk", "128", "--json"], full)
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert sorted(os.listdir(full_tmpdir)) == ["filler"]
    # adding a label renders its arrays' metadata in TMPDIR: no room
    bad = _cli(["label", L8_ITEM, "--collection", "l8", "--from", "indices"], full)
    lines = error_lines(bad.stderr)
    assert bad.returncode == 1 and len(lines) == 1, bad.stderr[-3000:]
    assert "no space left on the device" in lines[0] and "TMPDIR" in lines[0], lines[0]
    assert str(full_tmpdir) in lines[0]
    assert sorted(os.listdir(full_tmpdir)) == ["filler"]  # nothing left behind
    key = scene_key("l8", L8_ITEM)
    assert not store.exists(f"{key}/label/zarr.json")  # nothing half-written
    assert "satchunk:label_classes" not in read_item(store, "l8", L8_ITEM)["properties"]
    assert store.exists(item_key("l8", L8_ITEM))
    # with room, the same command completes
    again = _cli(["label", L8_ITEM, "--collection", "l8", "--from", "indices"], env)
    assert again.returncode == 0, again.stderr[-2000:]
    assert store.exists(f"{key}/label/zarr.json")
