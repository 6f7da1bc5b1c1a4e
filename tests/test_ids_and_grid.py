import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chunkstore import InvalidIdError, ShardGrid, chunk_histogram, scene_key, validate_id
from chunkstore.errors import InputError

settings.register_profile("ci", derandomize=True, max_examples=60)
settings.load_profile("ci")


@pytest.mark.parametrize("bad", ["../x", "/abs", "a/b", "%2e%2e", "a\\b", "a\x00b", "", "..",
                                 ".hidden", "x" * 129, "a b", "é"])
def test_bad_ids_are_refused(bad):
    with pytest.raises(InvalidIdError, match="invalid"):
        validate_id(bad)
    with pytest.raises(InvalidIdError):
        scene_key("c", bad)


@pytest.mark.parametrize("good", ["S2A_T33UUP_20200101", "l8.b4", "a-b_c.1", "x" * 128])
def test_good_ids_pass(good):
    assert validate_id(good) == good


@given(h=st.integers(1, 5000), w=st.integers(1, 5000), k=st.integers(1, 8),
       c=st.sampled_from([16, 64, 128, 256]))
def test_shard_windows_tile_the_scene_exactly(h, w, k, c):
    g = ShardGrid(h, w, shard=k * c, chunk=c)
    covered = 0
    for sy, sx in g.shards():
        r0, c0, hh, ww = g.window(sy, sx)
        assert r0 % g.shard == 0 and c0 % g.shard == 0
        assert 0 < hh <= g.shard and 0 < ww <= g.shard
        assert r0 + hh <= h and c0 + ww <= w
        covered += hh * ww
    assert covered == h * w
    ys, xs = g.dask_chunks()
    assert sum(ys) == h and sum(xs) == w


def test_shard_must_be_a_multiple_of_chunk():
    with pytest.raises(InputError, match="multiple of --chunk"):
        ShardGrid(100, 100, shard=300, chunk=256)


@given(h=st.integers(1, 96), w=st.integers(1, 96), seed=st.integers(0, 2**16))
def test_chunk_histogram_counts_every_labelled_pixel(h, w, seed):
    rng = np.random.default_rng(seed)
    label = rng.integers(0, 4, size=(h, w)).astype(np.uint8)
    label[rng.random((h, w)) < 0.1] = 255
    hist = chunk_histogram(label, chunk=32, n_inner=3, n_classes=4)
    assert hist.shape == (3, 3, 4)
    for iy in range(3):
        for ix in range(3):
            block = label[iy * 32:(iy + 1) * 32, ix * 32:(ix + 1) * 32]
            for k in range(4):
                assert hist[iy, ix, k] == (block == k).sum()
