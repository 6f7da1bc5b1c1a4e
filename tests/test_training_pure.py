"""Pure parts of training: split, sampler weights, augmentation, metrics."""

from __future__ import annotations

import numpy as np
import pytest

from training import augment, chunk_weights, confusion, scores, split_shards
from training._sampler import chunk_candidates, draw
from training._split import SplitError


def test_split_is_disjoint_complete_and_seeded():
    shards = [("c", "a", y, x) for y in range(4) for x in range(5)]
    s1 = split_shards(shards, seed=3)
    assert split_shards(list(reversed(shards)), seed=3) == s1  # order of input irrelevant
    assert split_shards(shards, seed=4) != s1
    parts = [set(s1[k]) for k in ("train", "val", "test")]
    assert set.union(*parts) == set(shards)
    assert sum(len(p) for p in parts) == len(shards)
    assert len(s1["val"]) == 3 and len(s1["test"]) == 3


def test_split_prefers_every_class_in_every_split():
    shards = [("c", "a", 0, x) for x in range(12)]
    holds = {s: np.array([True, s[3] in (0, 5, 9)]) for s in shards}  # class 1 in 3 shards
    split = split_shards(shards, seed=0, classes_of=holds)
    for part in split.values():
        assert any(holds[s][1] for s in part)


def test_split_needs_three_shards():
    with pytest.raises(SplitError, match="at least 3"):
        split_shards([("c", "a", 0, 0), ("c", "a", 0, 1)], seed=0)


def test_balanced_weights_equalize_class_exposure():
    # pure chunks: 90 of class 0, 9 of class 1, 1 of class 2
    counts = np.zeros((100, 3), dtype=np.int64)
    counts[:90, 0] = 100
    counts[90:99, 1] = 100
    counts[99, 2] = 100
    for mode, exponent in (("uniform", 1.0), ("balanced", 0.0)):
        assert np.allclose(chunk_weights(counts, mode, exponent), 0.01)
    w = chunk_weights(counts, "balanced", 1.0)
    exposure = w @ counts / (w @ counts).sum()
    assert np.allclose(exposure, 1 / 3)
    half = chunk_weights(counts, "balanced", 0.5) @ counts
    assert 0.01 < half[2] / half.sum() < 1 / 3  # between uniform and balanced


def test_candidates_skip_unlabelled_chunks_and_draws_follow_weights():
    hist = np.zeros((1, 2, 2, 2, 2), dtype=np.uint32)  # 1 x 2 shards, 2 x 2 chunks each
    hist[0, 0, 0, 1, 0] = 10
    hist[0, 1, 1, 0, 1] = 5
    c = chunk_candidates(0, hist, [(0, 0), (0, 1)], shard=256, chunk=128)
    assert list(zip(c.y0, c.x0, strict=True)) == [(0, 128), (128, 256)]
    d = draw(chunk_weights(c.counts), 2000, np.random.default_rng(0), chunk=128, patch=64)
    share = np.mean([x.candidate for x in d])
    # class 1 has half the pixels of class 0: its chunk is drawn twice as often, so
    # both classes get the same expected pixel exposure
    assert 0.62 < share < 0.71
    assert all(0 <= x.dy <= 64 and 0 <= x.dx <= 64 and 0 <= x.aug < 8 for x in d)


def test_augment_moves_image_and_label_together_as_numpy_turns_and_flips():
    import torch

    rng = np.random.default_rng(1)
    one = rng.integers(0, 3, (6, 6)).astype(np.uint8)
    lab = np.stack([one] * 8)  # the same patch under each of the 8 codes
    img = np.stack([lab * 10.0, lab * -1.0], axis=1).astype(np.float32)
    codes = np.arange(8)
    x, y = augment(torch.from_numpy(img.copy()), torch.from_numpy(lab.copy()).long(), codes)
    x, y = x.numpy(), y.numpy()
    seen = set()
    for code in codes:
        assert np.array_equal(x[code, 0], y[code] * 10.0)
        assert np.array_equal(x[code, 1], -y[code].astype(np.float32))
        ref = np.rot90(lab[code], code % 4)  # today's numpy augmentation, patch by patch
        assert np.array_equal(y[code], ref[:, ::-1] if code >= 4 else ref)
        seen.add(y[code].tobytes())
    assert len(seen) == 8  # the eight symmetries of the square are distinct here


def test_scores_match_boolean_formulas():
    rng = np.random.default_rng(0)
    target = rng.integers(0, 4, (50, 60)).astype(np.uint8)
    target[:5] = 255
    pred = np.where(rng.random(target.shape) < 0.7, target % 4, rng.integers(0, 4, target.shape))
    pred[0, 0] = 3
    s = scores(confusion(pred, target, 4), ["a", "b", "c", "d"])
    valid = target != 255
    for k, name in enumerate("abcd"):
        t, p = (target == k) & valid, (pred == k) & valid
        tp, fp, fn = (t & p).sum(), (~t & p).sum(), (t & ~p).sum()
        m = s["per_class"][name]
        assert m["iou"] == pytest.approx(tp / (tp + fp + fn))
        assert m["dice"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
        assert m["precision"] == pytest.approx(tp / (tp + fp))
        assert m["recall"] == pytest.approx(tp / (tp + fn))
    assert s["overall_accuracy"] == pytest.approx((pred[valid] == target[valid]).mean())
    assert s["pixels"] == valid.sum()


def test_split_keeps_a_rare_class_in_training_when_it_cannot_be_everywhere():
    shards = [("c", "a", 0, x) for x in range(20)]
    holds = {s: np.array([True, s[3] in (4, 11)]) for s in shards}  # class 1 in 2 shards
    for seed in range(5):
        split = split_shards(shards, seed=seed, classes_of=holds)
        assert any(holds[s][1] for s in split["train"])
        assert any(holds[s][1] for s in split["val"] + split["test"])


def test_draw_offsets_use_each_candidates_own_chunk():
    chunks = np.array([128] * 5 + [512] * 5)
    d = draw(np.full(10, 0.1), 4000, np.random.default_rng(0), chunk=chunks, patch=128)
    small = [x for x in d if x.candidate < 5]
    large = [x for x in d if x.candidate >= 5]
    assert all(x.dy == 0 and x.dx == 0 for x in small)
    assert max(x.dy for x in large) == 384 and max(x.dx for x in large) == 384


def test_scenes_on_one_grid_split_by_ground_not_by_date():
    from models import Radiometry
    from training import SceneRef
    from training._plan import _split_ground

    def scene(item, grid_id):
        return SceneRef("c", item, f"zarr/c/{item}.zarr", ("red",), (2048, 2048), 512, 128,
                        Radiometry(1e-4, 0, 0), ("a", "b"), grid_id)

    scenes = [scene("date1", "g1"), scene("date2", "g1"), scene("other", "g2")]
    labelled = [(s.collection, s.item, y, x) for s in scenes for y in range(4)
                for x in range(4)]
    present = {sid: np.array([True, True]) for sid in labelled}
    split = _split_ground(scenes, labelled, present, seed=0)
    where = {sid: k for k, v in split.items() for sid in v}
    assert len(where) == len(labelled)
    for y in range(4):
        for x in range(4):
            assert where[("c", "date1", y, x)] == where[("c", "date2", y, x)]
    assert {where[("c", "other", y, x)] for y in range(4) for x in range(4)} == {
        "train", "val", "test"}


def test_nir_and_nir08_stand_for_each_other_a_models_own_name_first():
    """A checkpoint trained on Landsat (B5 = nir08) reads a Sentinel-2 or generic scene's
    broad nir, and the other way round; where a scene has both, the model's own."""
    from models import ModelSpec, match_bands

    landsat = ModelSpec(name="m", version="1", bands=("red", "nir08"), classes=("a", "b"))
    assert match_bands(landsat, ["blue", "red", "nir"], "s") == ((1, 2), ("red", "nir08"))
    broad = ModelSpec(name="m", version="1", bands=("nir",), classes=("a", "b"))
    assert match_bands(broad, ["nir08", "nir"], "s") == ((1,), ("nir",))
    assert match_bands(broad, ["nir08"], "s") == ((0,), ("nir",))
