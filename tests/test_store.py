"""One contract for the store, run against a local directory and the real S3 server."""

import pickle

import pytest

from chunkstore import Credentials, NotFoundError, StoreError, open_store


class StoreContract:
    @pytest.fixture
    def store(self):
        raise NotImplementedError

    def test_write_read_list_delete(self, store):
        store.write_bytes("a/b/one.json", b"1")
        store.write_bytes("a/two.bin", b"22")
        assert store.read_bytes("a/b/one.json") == b"1"
        assert store.exists("a/two.bin") and not store.exists("a/none")
        assert store.list("a") == ["a/b/one.json", "a/two.bin"]
        assert store.list_dirs("a") == ["b"]
        store.delete("a/b")
        assert store.list("a") == ["a/two.bin"]
        assert store.list("missing") == []

    def test_missing_object_is_a_not_found_error(self, store):
        with pytest.raises(NotFoundError):
            store.read_bytes("nothing/here.json")
        with pytest.raises(NotFoundError):
            store.read_ranges("nothing/here.bin", [(0, 4)])

    def test_byte_ranges_and_the_tail_of_an_object(self, store):
        data = bytes(range(256)) * 40
        store.write_bytes("r/obj.bin", data)
        got = store.read_ranges("r/obj.bin", [(10, 20), (-36, 0), (0, 1), (10, 20),
                                             (9000, 10240)])
        assert got == [data[10:20], data[-36:], data[:1], data[10:20], data[9000:]]

    @pytest.mark.parametrize("key", ["../x", "/abs", "a/../../b", "a\\b", "a\x00b", "a//b"])
    def test_keys_that_climb_out_are_refused(self, store, key):
        with pytest.raises(StoreError, match="invalid object key"):
            store.write_bytes(key, b"x")

    def test_zarr_roundtrip(self, store):
        import numpy as np
        import zarr

        z = zarr.create_array(store.zarr_store("z.zarr"), shape=(4, 4), chunks=(2, 2),
                              dtype="uint8")
        z[:] = np.arange(16, dtype="uint8").reshape(4, 4)
        back = zarr.open_array(store.zarr_store("z.zarr", read_only=True))
        assert (back[:] == np.arange(16).reshape(4, 4)).all()


class TestLocalStore(StoreContract):
    @pytest.fixture
    def store(self, tmp_path):
        return open_store(str(tmp_path / "store"))


class TestS3Store(StoreContract):
    @pytest.fixture
    def store(self, s3_store):
        s3_store.check()
        return s3_store


def test_store_from_environment(s3_env):
    store = open_store(env=s3_env)
    assert store.uri == s3_env["SATCHUNK_STORE"]
    assert store.endpoint_url == s3_env["AWS_ENDPOINT_URL"]


def test_no_store_given_says_how_to_give_one():
    with pytest.raises(StoreError, match="SATCHUNK_STORE"):
        open_store(env={})


def test_credentials_never_printed_or_pickled(s3_store, s3_env):
    secret = s3_env["AWS_SECRET_ACCESS_KEY"]
    assert secret not in repr(s3_store) and secret not in repr(s3_store.credentials)
    assert secret.encode() not in pickle.dumps(s3_store)
    assert pickle.loads(pickle.dumps(s3_store)).credentials == Credentials()


def test_wrong_secret_is_a_one_line_error_without_the_secret(s3_env):
    env = dict(s3_env, AWS_SECRET_ACCESS_KEY="not-the-secret-123456")
    with pytest.raises(StoreError) as err:
        open_store(env=env).check()
    msg = str(err.value)
    assert "access denied" in msg and "\n" not in msg
    assert "not-the-secret" not in msg and s3_env["AWS_SECRET_ACCESS_KEY"] not in msg


def test_missing_bucket_and_unreachable_endpoint(s3_env):
    with pytest.raises(StoreError, match="does not exist"):
        open_store("s3://no-such-bucket/x", env=s3_env).check()
    from chunkstore._server import free_port

    env = dict(s3_env, AWS_ENDPOINT_URL=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(StoreError, match="cannot reach"):
        open_store(env=env).check()


@pytest.mark.parametrize("damage", ["truncated", "flipped", "other pixels"])
def test_a_damaged_prediction_piece_is_an_error_naming_its_key(s3_store, damage):
    import numpy as np

    from chunkstore import CorruptObjectError, mask_key
    from inference._parts import part_key, read_part, write_part

    key = part_key(mask_key("c", "i", "m-1"), (0, 1), "x", (1, 1))
    assert key == "scratch/masks/c/i/m-1.zarr/0.1.x/1.1"
    values = np.random.default_rng(0).random((3, 5, 7), dtype=np.float32)
    write_part(s3_store, key, (10, 15, 20, 27), values)
    np.testing.assert_array_equal(read_part(s3_store, key, (10, 15, 20, 27), 3), values)
    data = s3_store.read_bytes(key)
    if damage == "other pixels":
        write_part(s3_store, key, (10, 15, 21, 28), values)
    else:
        s3_store.write_bytes(key, data[:len(data) // 2] if damage == "truncated"
                             else data[:60] + bytes([data[60] ^ 1]) + data[61:])
    with pytest.raises(CorruptObjectError, match="damaged") as err:
        read_part(s3_store, key, (10, 15, 20, 27), 3)
    assert s3_store.url(key) in str(err.value)


def test_read_scene_and_read_mask_give_what_was_written(tmp_path):
    """The one scene reader and the one mask reader return the schema they were made
    from; a missing one is a NotFoundError naming its URL."""
    from chunkstore import (
        MaskSchema,
        SceneSchema,
        ShardGrid,
        add_label,
        create_mask,
        create_scene,
        mask_item_id,
        read_mask,
        read_scene,
    )

    st = open_store(str(tmp_path / "store"))
    grid = ShardGrid(300, 200, 128, 64)
    schema = SceneSchema(bands=("red", "nir"), dtype="uint16", scale=1e-4, offset=-0.1,
                         nodata=0, crs_wkt="EPSG:32618",
                         transform=(10.0, 0.0, 5e5, 0.0, -10.0, 4e6), grid=grid,
                         aux=(("qa", "uint16"),), attrs={"fingerprint": {"a": 1}})
    create_scene(st, "zarr/c/s.zarr", schema)
    info = read_scene(st, "zarr/c/s.zarr")
    assert (info.key, info.shape, info.grid, info.bands) == (
        "zarr/c/s.zarr", (2, 300, 200), grid, ("red", "nir"))
    assert (info.dtype, info.scale, info.offset, info.fill) == ("uint16", 1e-4, -0.1, 0.0)
    assert (info.crs_wkt, info.transform) == (schema.crs_wkt, schema.transform)
    assert info.aux == ("qa",) and info.label_classes is None and info.label_source is None
    assert info.attrs["satchunk"] == {"fingerprint": {"a": 1}}
    add_label(st, "zarr/c/s.zarr", ("a", "b c"), {"from": "test"})
    info = read_scene(st, "zarr/c/s.zarr")
    assert (info.label_classes, info.label_source) == (("a", "b c"), {"from": "test"})
    with pytest.raises(NotFoundError, match=r"^no scene Zarr at .*zarr/c/none\.zarr$"):
        read_scene(st, "zarr/c/none.zarr")

    mschema = MaskSchema(grid=grid, crs_wkt=schema.crs_wkt, transform=schema.transform,
                         classes=("clear", "cloud"), colors=("#000000", "#ffffff"),
                         products=("class", "entropy"), attrs={"model_id": "m-1"})
    create_mask(st, "masks/c/s/m-1.zarr", mschema)
    m = read_mask(st, "masks/c/s/m-1.zarr")
    assert (m.shape, m.grid, m.classes, m.colors, m.products) == (
        (300, 200), grid, ("clear", "cloud"), ("#000000", "#ffffff"), ("class", "entropy"))
    assert (m.crs_wkt, m.transform, m.attrs["satchunk"]) == (
        schema.crs_wkt, schema.transform, {"model_id": "m-1"})
    with pytest.raises(NotFoundError, match="no mask Zarr at"):
        read_mask(st, "masks/c/s/none.zarr")
    assert mask_item_id("s", "m-1") == "s__m-1"
