"""Polygons merged across shard borders equal the polygons of the whole class map
(property test over map shapes, shard sizes and class counts)."""

from __future__ import annotations

import numpy as np
import shapely
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import ndimage

from inference import merge_pieces, shard_pieces


def class_map(h, w, k, seed):
    """Blobby classes (smoothed noise), a nodata corner and a one-pixel nodata line."""
    rng = np.random.default_rng(seed)
    noise = ndimage.gaussian_filter(rng.normal(size=(h, w)), 2.0)
    cls = np.digitize(noise, np.quantile(noise, np.linspace(0, 1, k + 1)[1:-1])).astype(np.uint8)
    cls[: h // 4, : w // 5] = 255
    cls[h // 2, :] = 255 if seed % 2 else cls[h // 2, :]
    prob = rng.uniform(0.3, 1.0, size=(k, h, w))
    return cls, prob


def by_shard(cls, prob, shard):
    h, w = cls.shape
    pieces = []
    for r0 in range(0, h, shard):
        for c0 in range(0, w, shard):
            win = (r0, c0, min(shard, h - r0), min(shard, w - c0))
            pieces.append(shard_pieces(cls[r0:r0 + shard, c0:c0 + shard],
                                       prob[:, r0:r0 + shard, c0:c0 + shard], win,
                                       id_base=len(pieces) << 32))
    return merge_pieces(pieces)


def key(poly):
    return (poly.cls, poly.pixels, round(poly.prob_sum, 6), shapely.normalize(poly.geometry).wkt)


@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(h=st.integers(1, 90), w=st.integers(1, 90), shard=st.integers(1, 40),
       k=st.integers(1, 5), seed=st.integers(0, 7))
def test_merged_shards_equal_whole_map(h, w, shard, k, seed):
    cls, prob = class_map(h, w, k, seed)
    whole = merge_pieces([shard_pieces(cls, prob, (0, 0, h, w), 0)])
    merged = by_shard(cls, prob, shard)
    assert sorted(map(key, merged)) == sorted(map(key, whole))
    # whole-map ground truth: one polygon per 4-connected same-class component
    n = sum(ndimage.label(cls == c)[1] for c in np.unique(cls) if c != 255)
    assert len(whole) == n
    assert sum(p.pixels for p in whole) == int((cls != 255).sum())
    for p in merged:
        assert p.geometry.is_valid and p.geometry.geom_type == "Polygon"
        assert p.geometry.area == p.pixels  # pixel units: area = pixel count


def test_ring_around_a_shard_corner_is_one_polygon_with_a_hole():
    cls = np.zeros((8, 8), np.uint8)
    cls[2:6, 2:6] = 1
    cls[3:5, 3:5] = 0  # a hole of class 0 inside class 1, cut by the shard corner at (4, 4)
    polys = by_shard(cls, np.ones((2, 8, 8)), 4)
    ring = [p for p in polys if p.cls == 1]
    assert len(ring) == 1 and len(ring[0].geometry.interiors) == 1
    assert ring[0].pixels == 12 and ring[0].mean_probability == 1.0
    assert sorted(p.pixels for p in polys if p.cls == 0) == [4, 48]
