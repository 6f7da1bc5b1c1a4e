"""The pure block functions: chunked output (shared-tile pieces plus each shard's own
tiles) equals whole-image output of the same adapter, and every tile runs once
(property tests over shard sizes, halos, tile offsets and scene shapes); the mirror
is numpy's 'symmetric' padding; the blend window is a partition of unity."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inference import Radiometry, TilePlan, blend_window, predict_scene, shard_probs, shared_probs
from inference import products as make_products
from inference._tiling import reflect
from models import new_model

RADIOMETRY = Radiometry(1e-4, 0.0, 0.0)
NAMES = ("blue", "green", "red", "nir")


def chunked(raw, adapter, shard, batch=5):
    """As the predict tasks do: the shared-tile tasks write pieces, then each shard
    task reads its shard (and mirrors scene edges), runs its inner tiles and adds the
    pieces that reach it. ``read`` only ever sees the scene's pixels."""
    H, W = raw.shape[1:]
    plan = TilePlan.of(adapter.spec, (H, W), shard)

    def read(y0, y1, x0, x1):
        assert 0 <= y0 < y1 <= H and 0 <= x0 < x1 <= W
        return raw[:, y0:y1, x0:x1]

    parts = {}
    for owner in plan.owners():
        for group, (ys, xs) in plan.groups(owner).items():
            (y0, _, x0, _), acc = shared_probs(read, NAMES, adapter, RADIOMETRY, plan, ys, xs,
                                               batch)
            for target, (r0, r1, c0, c1) in plan.targets(owner, group):
                parts[owner, group, target] = acc[:, r0 - y0:r1 - y0, c0 - x0:c1 - x0].numpy()
    probs = np.zeros((adapter.spec.num_classes, H, W), np.float32)
    valid = np.zeros((H, W), bool)
    for s in plan.shards():
        pieces = [(rect, parts.pop((o, g, s))) for o, g, rect in plan.sources(s)]
        p, v = shard_probs(read, NAMES, adapter, RADIOMETRY, plan, s, pieces, batch)
        y0, y1, x0, x1 = plan.window(s)
        probs[:, y0:y1, x0:x1], valid[y0:y1, x0:x1] = p.numpy(), v.numpy()
    assert not parts  # every piece written reaches a shard
    return probs, valid


class Counting:
    """An adapter that records every tile it is given (by its first input values)."""

    def __init__(self, adapter):
        self.spec, self.inner, self.calls = adapter.spec, adapter, 0
        self.runtime, self.device = adapter.runtime, adapter.device

    def probabilities(self, tiles):
        self.calls += len(tiles)
        return self.inner.probabilities(tiles)


def scene(h, w, seed):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = 1500 + 800 * np.sin(yy / 7.0) * np.cos(xx / 11.0)
    raw = np.stack([base * (1 + 0.2 * b) + rng.normal(0, 200, (h, w)) for b in range(4)])
    raw = raw.clip(1, 10000).astype(np.uint16)
    raw[:, : h // 5, : w // 6] = 0  # a nodata corner
    return raw


@settings(max_examples=12, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(h=st.integers(9, 150), w=st.integers(9, 150), shard_chunks=st.integers(1, 6),
       tile=st.sampled_from([16, 24, 32]), halo_frac=st.sampled_from([0, 1, 2, 4]),
       offset=st.integers(0, 100), seed=st.integers(0, 3))
def test_chunked_equals_whole_image(h, w, shard_chunks, tile, halo_frac, offset, seed):
    halo = tile * halo_frac // 16  # 0 .. tile/4
    stride = tile - 2 * halo
    adapter = new_model("unet", tile=tile, halo=halo, tile_offset=offset % stride, depth=2,
                        width=4, seed=seed, mean=(0.15,) * 4, std=(0.08,) * 4)
    raw = scene(h, w, seed)
    whole, wvalid = (t.numpy() for t in predict_scene(raw, NAMES, adapter, RADIOMETRY, batch=7))
    counting = Counting(adapter)
    parts, pvalid = chunked(raw, counting, shard=8 * shard_chunks)
    plan = TilePlan.of(adapter.spec, (h, w), 8 * shard_chunks)
    assert counting.calls == plan.tile_count()  # every tile of the scene once
    np.testing.assert_array_equal(wvalid, pvalid)
    assert np.abs(whole - parts).max() <= 1e-4
    cw = make_products(torch.from_numpy(whole), torch.from_numpy(wvalid), ("class",))["class"]
    cp = make_products(torch.from_numpy(parts), torch.from_numpy(pvalid), ("class",))["class"]
    assert np.mean(cw == cp) >= 0.9999
    assert (cw[: h // 5, : w // 6] == 255).all()  # nodata gets the nodata class


@given(n=st.integers(1, 40), a=st.integers(-100, 40), length=st.integers(1, 100))
def test_mirror_is_numpys_symmetric_padding(n, a, length):
    x = np.arange(n)
    padded = np.pad(x, (200, 200), mode="symmetric")
    coords = np.arange(a, a + length)
    np.testing.assert_array_equal(x[reflect(coords, n)], padded[coords + 200])


def test_tiles_run_once_on_a_large_scene_where_shards_ran_borders_twice():
    """16384^2 in 2048 px shards with ukis-csmask's grid (256 px tiles, 204 px
    stride): every shard computing every tile touching it made 7921 model calls."""
    plan = TilePlan(16384, 16384, 2048, 256, 204, (-51) % 204)
    per_shard = sum(len(plan.inner(s)[0]) * len(plan.inner(s)[1]) for s in plan.shards())
    shared = sum(len(ys) * len(xs) for o in plan.owners() for ys, xs in plan.groups(o).values())
    assert per_shard + shared == plan.tile_count() == 82 * 82
    assert {s for s in plan.shards() if plan.sources(s)} == set(plan.shards())


def test_blend_window_is_a_partition_of_unity():
    for tile, halo in ((256, 32), (256, 26), (16, 4), (8, 0)):
        w = blend_window(tile, halo).astype(np.float64)
        assert (w > 0).all()
        stride = tile - 2 * halo
        total = np.zeros(tile * 4)
        for s in range(0, tile * 4 - tile + 1, stride):
            total[s:s + tile] += w
        inner = total[tile:-tile]
        np.testing.assert_allclose(inner, 1.0, atol=1e-6)


def test_products_quantization():
    p = np.array([[[0.7, 0.2]], [[0.2, 0.5]], [[0.1, 0.3]]], np.float32)  # K=3, 1x2 pixels
    valid = np.array([[True, False]])
    out = make_products(torch.from_numpy(p), torch.from_numpy(valid),
                        ("class", "probability", "entropy", "margin"))
    assert out["class"].tolist() == [[0, 255]]
    assert out["probability"][:, 0, 0].tolist() == [178, 51, 26]
    assert out["probability"][:, 0, 1].tolist() == [0, 0, 0]
    assert out["margin"][0, 0] == round(0.5 * 255)
    ent = -(0.7 * np.log(0.7) + 0.2 * np.log(0.2) + 0.1 * np.log(0.1)) / np.log(3)
    assert out["entropy"][0, 0] == round(ent * 255)
