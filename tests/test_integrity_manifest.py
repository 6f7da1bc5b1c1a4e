"""Nothing missing or misplaced reads as data: every committed scene, label and mask
Zarr has a manifest (objects, sizes, content tags) kept with its STAC item; a deleted,
swapped, truncated or edited object is a one-line error naming it and the command that
rewrites it, and that command, re-run, restores byte-identical data. Scene and mask
ids cannot collide. Real Landsat 8 data, the embedded S3 server and a local
directory store."""

from __future__ import annotations

import json
import os
import shutil

import pytest
from joboutput import chunks, error_lines, objects

from chunkstore import (
    CorruptObjectError,
    InputError,
    item_key,
    mask_key,
    open_scene,
    open_store,
    read_item,
    read_mask,
    read_scene,
    scene_key,
    write_item,
)
from chunkstore._layout import manifest_key
from inference import load_checked, model_ref, predict_item
from ingest import check_inputs, ingest_scenes, label_scene
from satchunk.cli import main

L8 = "small_full_data_cloudy"
CSMASK = "ukis-csmask:4b"
CSMASK_ID = "ukis-csmask-4b-l1c-1.0.0-4BL1C"
SHARD = "reflectance/c/0/1/1"


def _ingest(store, client, path, collection="l8"):
    scenes = check_inputs([str(path)], collection, shard=256, chunk=128)
    return ingest_scenes(scenes, collection, store, client, shard=256, chunk=128,
                         progress=False)[0]


def _predict(store, client, collection="l8"):
    ref = model_ref(CSMASK, store)
    return predict_item(store, client, L8, ref, load_checked(ref, store),
                        collection=collection, progress=False)


@pytest.fixture
def scene(s3_store, client, landsat_dir):
    _ingest(s3_store, client, landsat_dir)
    key = scene_key("l8", L8)
    return key, objects(s3_store, key)


def _damage(store, key, how, shard=SHARD):
    """Damage one shard object of the Zarr at ``key`` in one of the ways a store can."""
    obj = f"{key}/{shard}"
    if how == "deleted":
        store.delete_object(obj)
    elif how == "truncated":
        data = store.read_bytes(obj)
        store.write_bytes(obj, data[: len(data) - 100])
    elif how == "swapped":  # another valid shard of the same array copied over it
        store.write_bytes(obj, store.read_bytes(f"{key}/{shard.rsplit('/', 2)[0]}/0/0"))
    elif how == "flipped":  # same size, one byte changed
        data = bytearray(store.read_bytes(obj))
        data[len(data) // 2] ^= 0xFF
        store.write_bytes(obj, bytes(data))
    return obj


DAMAGE = [("deleted", "is missing"), ("truncated", "bytes where"), ("swapped", "replaced")]


@pytest.mark.parametrize("how,what", [("deleted", "is missing"),
                                      ("truncated", "bytes where"),
                                      ("swapped", "replaced"),
                                      ("flipped", "holds other content")])
def test_a_damaged_scene_shard_is_named_then_a_rerun_of_ingest_restores_it(
        s3_store, client, landsat_dir, scene, how, what):
    key, before = scene
    obj = _damage(s3_store, key, how)
    for read in (lambda: open_scene(s3_store, key), lambda: read_scene(s3_store, key)):
        with pytest.raises(CorruptObjectError) as err:
            read()
        msg = str(err.value)
        assert s3_store.url(obj) in msg and what in msg, msg
        assert "re-run the ingest of l8/" in msg and "\n" not in msg
    again = _ingest(s3_store, client, landsat_dir)
    assert again["status"] == "repaired" and again["written_shards"] == 1
    assert chunks(objects(s3_store, key)) == chunks(before)  # byte-identical
    assert open_scene(s3_store, key).reflectance.sum().compute() > 0
    assert _ingest(s3_store, client, landsat_dir)["status"] == "exists"


def test_predict_refuses_a_damaged_scene_in_one_line(
        s3_store, s3_env, scene, monkeypatch, capsys):
    key, _ = scene
    obj = _damage(s3_store, key, "deleted")
    for k, v in s3_env.items():
        monkeypatch.setenv(k, v)
    code = main(["predict", L8, "--collection", "l8", "--model", CSMASK])
    lines = error_lines(capsys.readouterr().err)
    assert code == 1 and len(lines) == 1, lines
    assert s3_store.url(obj) in lines[0] and "is missing" in lines[0], lines
    assert not s3_store.exists(item_key("l8", f"{L8}__{CSMASK_ID}"))  # nothing committed
    assert s3_store.list("masks") == []


def test_an_edited_zarr_json_is_named_and_a_rerun_rewrites_the_scene(
        s3_store, client, landsat_dir, scene):
    key, before = scene
    meta_key = f"{key}/reflectance/zarr.json"
    meta = json.loads(s3_store.read_bytes(meta_key))
    meta["attributes"]["scale_factor"] *= 10
    s3_store.write_bytes(meta_key, json.dumps(meta).encode())
    with pytest.raises(CorruptObjectError,
                       match=r"reflectance/zarr.json (is \d+ bytes|holds other)"):
        open_scene(s3_store, key)
    again = _ingest(s3_store, client, landsat_dir)
    assert again["status"] == "ingested" and again["written_shards"] == again["shards"]
    after = objects(s3_store, key)
    assert chunks(after) == chunks(before)
    assert json.loads(after["reflectance/zarr.json"]) == json.loads(before["reflectance/zarr.json"])
    open_scene(s3_store, key)


def test_a_committed_scene_without_its_manifest_is_damage(s3_store, scene):
    key, _ = scene
    s3_store.delete_object(manifest_key("l8", L8))
    with pytest.raises(CorruptObjectError, match="manifest.json is missing .*re-run the ingest"):
        read_scene(s3_store, key)


@pytest.mark.parametrize("how,what", DAMAGE)
def test_a_damaged_label_names_the_label_job_and_its_rerun_restores_it(s3_store, client,
                                                                        scene, how, what):
    key, _ = scene
    assert label_scene(s3_store, client, L8, "indices", progress=False)["status"] == "labelled"
    labelled = objects(s3_store, key)
    obj = _damage(s3_store, key, how, "label/c/1/1")
    with pytest.raises(CorruptObjectError) as err:
        read_scene(s3_store, key)
    assert s3_store.url(obj) in str(err.value) and what in str(err.value)
    assert f"satchunk label {L8} --collection l8 --from indices" in str(err.value)
    from training._data import labelled_scenes

    with pytest.raises(CorruptObjectError, match=f"label/c/1/1 .*{what}"):
        labelled_scenes(s3_store, ["l8"])  # training refuses it before any step
    again = label_scene(s3_store, client, L8, "indices", progress=False)
    assert again["status"] == "repaired" and again["written_shards"] == 1
    assert chunks(objects(s3_store, key)) == chunks(labelled)
    assert read_scene(s3_store, key).label_classes


@pytest.mark.parametrize("how,what", DAMAGE)
def test_a_damaged_mask_shard_names_predict_and_its_rerun_restores_it(s3_store, client,
                                                                      scene, how, what):
    assert _predict(s3_store, client)["status"] == "predicted"
    mkey = mask_key("l8", L8, CSMASK_ID)
    before = objects(s3_store, mkey)
    obj = _damage(s3_store, mkey, how, "class/c/1/1")
    for read in (lambda: read_mask(s3_store, mkey), lambda: open_scene(s3_store, mkey)):
        with pytest.raises(CorruptObjectError) as err:
            read()
        msg = str(err.value)
        assert s3_store.url(obj) in msg and what in msg and "satchunk predict" in msg, msg
    again = _predict(s3_store, client)
    assert again["status"] == "repaired" and again["written_shards"] == 1
    assert chunks(objects(s3_store, mkey)) == chunks(before)
    assert s3_store.list(f"scratch/{mkey}") == []  # the border pieces it made are gone


def test_a_shard_deleted_after_the_check_is_still_no_fill(s3_store, scene):
    """A worker reading after the client's check still finds a missing shard."""
    import zarr

    key, _ = scene
    arr = zarr.open_array(s3_store.zarr_store(f"{key}/reflectance", read_only=True),
                          mode="r")
    s3_store.delete_object(f"{key}/{SHARD}")
    with pytest.raises(CorruptObjectError, match="reflectance/c/0/1/1 is missing"):
        arr[:, 256:300, 256:300]


def test_a_local_directory_store_checks_and_repairs_too(tmp_path, client, landsat_dir):
    store = open_store(str(tmp_path / "store"))
    _ingest(store, client, landsat_dir)
    key = scene_key("l8", L8)
    before = objects(store, key)
    root = tmp_path / "store" / key
    # a copy that keeps the source's modification time (cp -p) is still caught
    shutil.copy2(root / "reflectance/c/0/0/0", root / "reflectance/c/0/1/1")
    with pytest.raises(CorruptObjectError, match="c/0/1/1 is .* replaced"):
        open_scene(store, key)
    assert _ingest(store, client, landsat_dir)["status"] == "repaired"
    assert chunks(objects(store, key)) == chunks(before)
    # same size, one byte changed: hashed again since its modification time changed
    data = bytearray((root / "reflectance/c/0/1/0").read_bytes())
    data[100] ^= 0xFF
    (root / "reflectance/c/0/1/0").write_bytes(bytes(data))
    with pytest.raises(CorruptObjectError, match="c/0/1/0 holds other content"):
        read_scene(store, key)
    assert _ingest(store, client, landsat_dir)["status"] == "repaired"
    assert chunks(objects(store, key)) == chunks(before)
    # a store copied elsewhere (new modification times, same bytes) still reads
    shutil.copytree(tmp_path / "store", tmp_path / "copy")
    for path in (tmp_path / "copy").rglob("*"):
        os.utime(path)
    open_scene(open_store(str(tmp_path / "copy")), key)


def test_scene_and_mask_ids_cannot_collide_in_either_order(s3_store, client, scene, tmp_path,
                                                          landsat_dir):
    # a scene named like a mask item: refused before anything is written
    mask_like = tmp_path / f"{L8}__{CSMASK_ID}"
    shutil.copytree(landsat_dir, mask_like)
    with pytest.raises(InputError, match="'__' is reserved for masks"):
        check_inputs([str(mask_like)], "l8")
    # a mask item's id can never be taken by a scene item, nor the other way round
    _predict(s3_store, client)
    mask_item = read_item(s3_store, "l8", f"{L8}__{CSMASK_ID}")
    import pystac

    as_scene = dict(mask_item, properties={k: v for k, v in mask_item["properties"].items()
                                           if k != "satchunk:kind"})
    with pytest.raises(InputError, match="is a mask, not a scene"):
        write_item(s3_store, pystac.Item.from_dict(as_scene))
    scene_item = read_item(s3_store, "l8", L8)
    as_mask = dict(scene_item, properties={**scene_item["properties"], "satchunk:kind": "mask"})
    with pytest.raises(InputError, match="is a scene, not a mask"):
        write_item(s3_store, pystac.Item.from_dict(as_mask))
    assert read_item(s3_store, "l8", f"{L8}__{CSMASK_ID}") == mask_item  # untouched


def test_a_checksum_failure_read_through_xarray_names_the_object(s3_store, scene):
    """Below the manifest: bytes altered in place (the server's tag unchanged, as
    on a failing disk) are read as an error naming the object, from xarray too."""
    import xarray as xr

    key, _ = scene
    obj = _damage(s3_store, key, "flipped")
    ds = xr.open_zarr(s3_store.zarr_store(key, read_only=True), consolidated=False,
                      zarr_format=3)
    with pytest.raises(CorruptObjectError) as err:
        _ = ds.reflectance[:, 256:512, 256:512].values  # the whole shard: every inner chunk
    assert f"{s3_store.url(obj)} is damaged" in str(err.value)
