"""Network faults between satchunk and the object store, injected by a loopback
proxy (tests/faultproxy.py) in front of the embedded S3 server: connection resets,
bodies cut mid-stream, long delays, 503 SlowDown and 403. Each is retried to the
same result as a clean run, or fails within a bounded time with a one-line error
and nothing committed; a 403 fails fast. And the server itself stopped for about
10 s in the middle of a job."""

from __future__ import annotations

import dataclasses
import threading
import time
from urllib.parse import urlparse

import pytest
from faultproxy import FaultProxy
from joboutput import chunks, objects

from chunkstore import (
    JobError,
    SatchunkError,
    StoreError,
    item_key,
    mask_key,
    scene_key,
)
from inference import load_checked, model_ref, predict_item
from ingest import check_inputs, ingest_scenes

L8_ITEM = "small_full_data_cloudy"
CSMASK = "ukis-csmask:4b"
CSMASK_ID = "ukis-csmask-4b-l1c-1.0.0-4BL1C"


def _ingest(store, client, path, collection):
    scenes = check_inputs([str(path)], collection, shard=256, chunk=128)
    return ingest_scenes(scenes, collection, store, client, shard=256, chunk=128,
                         progress=False)


def _predict(store, client, collection):
    ref = model_ref(CSMASK, store)
    return predict_item(store, client, L8_ITEM, ref, load_checked(ref, store),
                        collection=collection, progress=False)


@pytest.fixture
def proxied(s3_server, s3_store):
    """(proxy, the test's store reached through it with 2 s read timeouts)"""
    up = urlparse(s3_server.endpoint_url)
    with FaultProxy((up.hostname, up.port)) as proxy:
        yield proxy, dataclasses.replace(s3_store, endpoint_url=proxy.url, read_timeout=2.0)


def test_resets_and_slowdowns_are_retried_to_the_clean_result(proxied, s3_store, client,
                                                                landsat_dir):
    proxy, store = proxied
    proxy.rule = lambda method, path, n: ("reset" if n % 7 == 3 else
                                          "503" if n % 7 == 5 else None)
    (res,) = _ingest(store, client, landsat_dir, "faulty")
    assert res["status"] == "ingested"
    p = _predict(store, client, "faulty")
    assert p["status"] == "predicted"
    assert proxy.faults["reset"] >= 5 and proxy.faults["503"] >= 5, proxy.faults
    proxy.rule = lambda *a: None
    _ingest(s3_store, client, landsat_dir, "clean")
    _predict(s3_store, client, "clean")
    a, b = (objects(s3_store, scene_key(c, L8_ITEM)) for c in ("faulty", "clean"))
    assert a.keys() == b.keys()
    assert chunks(a) == chunks(b)
    assert chunks(objects(s3_store, mask_key("faulty", L8_ITEM, CSMASK_ID))) == chunks(
        objects(s3_store, mask_key("clean", L8_ITEM, CSMASK_ID)))


def test_bodies_cut_mid_stream_never_give_garbage(proxied, s3_store, client, landsat_dir):
    proxy, store = proxied
    _ingest(s3_store, client, landsat_dir, "cut")
    _predict(s3_store, client, "cut")
    clean = chunks(objects(s3_store, mask_key("cut", L8_ITEM, CSMASK_ID)))
    s3_store.delete(mask_key("cut", L8_ITEM, CSMASK_ID))
    s3_store.delete(item_key("cut", f"{L8_ITEM}__{CSMASK_ID}"))
    proxy.rule = lambda method, path, n: "cut" if method == "GET" and n % 3 == 0 else None
    try:
        res = _predict(store, client, "cut")
    except SatchunkError as exc:  # failing is allowed; it must say so in one line
        assert len(str(exc).splitlines()) == 1
        assert not s3_store.exists(item_key("cut", f"{L8_ITEM}__{CSMASK_ID}"))
    else:
        assert res["status"] == "predicted"
        assert chunks(objects(s3_store, mask_key("cut", L8_ITEM, CSMASK_ID))) == clean
    assert proxy.faults.get("cut", 0) >= 3, proxy.faults


def test_long_delays_time_out_within_a_bound(proxied):
    proxy, store = proxied
    store.write_bytes("probe/x.json", b"{}")
    proxy.delay_s = 30.0
    proxy.rule = lambda method, path, n: "delay"
    t0 = time.monotonic()
    with pytest.raises(StoreError) as err:
        store.read_bytes("probe/x.json")
    took = time.monotonic() - t0
    # 2 rounds of 6 attempts of a 2 s read timeout, with at most 31 s of backoff a round
    assert took < 120, took
    assert "x.json" in str(err.value) and len(str(err.value).splitlines()) == 1
    proxy.rule = lambda *a: None
    assert store.read_bytes("probe/x.json") == b"{}"


def test_403_fails_fast_and_commits_nothing(proxied, client, landsat_dir):
    proxy, store = proxied
    proxy.rule = lambda method, path, n: "403" if method == "PUT" and "/c/" in path else None
    t0 = time.monotonic()
    with pytest.raises(SatchunkError) as err:
        _ingest(store, client, landsat_dir, "denied")
    took = time.monotonic() - t0
    assert took < 30, took
    msg = str(err.value)
    assert "access denied" in msg.lower() and len(msg.splitlines()) == 1, msg
    assert isinstance(err.value, JobError | StoreError)
    proxy.rule = lambda *a: None
    assert not store.exists(item_key("denied", L8_ITEM))
    assert proxy.faults["403"] <= 4  # not retried: at most once per task and its retry


def test_object_store_down_for_10_s_mid_ingest_recovers_or_fails_cleanly(
        tmp_path, client, landsat_dir):
    from chunkstore import open_store, start_s3_server

    server = start_s3_server(tmp_path / "s3", bucket="restart")
    try:
        env = server.env("t")
        store = open_store(env["SATCHUNK_STORE"], env=env)
        key = scene_key("down", L8_ITEM)
        outcome: dict = {}

        def run():
            try:
                outcome["result"] = _ingest(store, client, landsat_dir, "down")
            except SatchunkError as exc:
                outcome["error"] = exc

        job = threading.Thread(target=run)
        job.start()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not any(
                "/c/" in k for k in store.list(f"{key}/reflectance")):
            time.sleep(0.05)
        server.stop()
        time.sleep(10)
        server.start()
        job.join(300)
        assert not job.is_alive()
        if "error" in outcome:
            assert len(str(outcome["error"]).splitlines()) == 1
            assert not store.exists(item_key("down", L8_ITEM))
        # every shard object present is complete (readable, checksums hold), and a
        # re-run converges to the clean result
        (again,) = _ingest(store, client, landsat_dir, "down")
        (clean,) = _ingest(store, client, landsat_dir, "clean")
        assert clean["status"] == "ingested"
        a, b = objects(store, key), objects(store, scene_key("clean", L8_ITEM))
        assert a.keys() == b.keys()
        assert chunks(a) == chunks(b)
    finally:
        server.stop()
