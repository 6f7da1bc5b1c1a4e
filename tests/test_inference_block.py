"""The pure block function: chunked output equals whole-image output of the same
adapter (property test over shard sizes, halos, tile offsets and scene shapes), and
the blend window is a partition of unity."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inference import Radiometry, blend_window, context_depth, context_window, predict_window
from inference import products as make_products
from models import new_model

RADIOMETRY = Radiometry(1e-4, 0.0, 0.0)
NAMES = ("blue", "green", "red", "nir")


def chunked(raw, adapter, shard):
    """As the predict tasks do: each shard with `depth` px of context read around it,
    nothing beyond the scene; returns probabilities and validity."""
    d = context_depth(adapter.spec)
    H, W = raw.shape[1:]
    probs = np.zeros((adapter.spec.num_classes, H, W), np.float32)
    valid = np.zeros((H, W), bool)
    for y0 in range(0, H, shard):
        for x0 in range(0, W, shard):
            interior = (y0, x0, min(shard, H - y0), min(shard, W - x0))
            wy0, wy1, wx0, wx1 = context_window(interior, d, (H, W))
            p, v = predict_window(raw[:, wy0:wy1, wx0:wx1], NAMES, adapter, RADIOMETRY,
                                  (wy0, wx0), interior, (H, W), batch=5)
            probs[:, y0:y0 + shard, x0:x0 + shard], valid[y0:y0 + shard, x0:x0 + shard] = p, v
    return probs, valid


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
    whole, wvalid = predict_window(raw, NAMES, adapter, RADIOMETRY, (0, 0), (0, 0, h, w), (h, w),
                                   batch=7)
    parts, pvalid = chunked(raw, adapter, shard=8 * shard_chunks)
    np.testing.assert_array_equal(wvalid, pvalid)
    assert np.abs(whole - parts).max() <= 1e-4
    cw = make_products(whole, wvalid, ("class",))["class"]
    cp = make_products(parts, pvalid, ("class",))["class"]
    assert np.mean(cw == cp) >= 0.9999
    assert (cw[: h // 5, : w // 6] == 255).all()  # nodata gets the nodata class


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
    out = make_products(p, valid, ("class", "probability", "entropy", "margin"))
    assert out["class"].tolist() == [[0, 255]]
    assert out["probability"][:, 0, 0].tolist() == [178, 51, 26]
    assert out["probability"][:, 0, 1].tolist() == [0, 0, 0]
    assert out["margin"][0, 0] == round(0.5 * 255)
    ent = -(0.7 * np.log(0.7) + 0.2 * np.log(0.2) + 0.1 * np.log(0.1)) / np.log(3)
    assert out["entropy"][0, 0] == round(ent * 255)
