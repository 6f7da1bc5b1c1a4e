"""Which patches to read: planned from the per-chunk label histograms. Pure.

A candidate is one inner chunk of one scene with at least one labelled pixel
(so no patch is ever nodata-only). ``uniform`` picks candidates with equal
probability; ``balanced`` weights chunk ``j`` by ``sum_k share_jk * f_k ** -a``
where ``share_jk`` is class ``k``'s share of the chunk's labelled pixels and
``f_k`` the class's frequency over all candidates: with ``a = 1`` classes are
seen about equally often, ``a = 0`` is uniform, values between blend the two.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MODES = ("balanced", "uniform")


@dataclass(frozen=True)
class Candidates:
    """Inner chunks that may be sampled: scene index, chunk origin (pixels), counts."""

    scene: np.ndarray   # (N,) int
    y0: np.ndarray      # (N,) int, scene pixels
    x0: np.ndarray      # (N,) int
    counts: np.ndarray  # (N, K) labelled pixels per class

    def __len__(self) -> int:
        return len(self.scene)

    @property
    def class_pixels(self) -> np.ndarray:
        return self.counts.sum(axis=0)


def chunk_candidates(scene: int, hist: np.ndarray, shards: list[tuple[int, int]],
                     shard: int, chunk: int) -> Candidates:
    """Candidates of one scene from its ``label_histogram`` (sy, sx, iy, ix, K),
    restricted to ``shards``."""
    n_in = hist.shape[2]
    rows = []
    counts = []
    for sy, sx in shards:
        h = hist[sy, sx].reshape(n_in * n_in, -1)
        keep = np.flatnonzero(h.sum(axis=1) > 0)
        for j in keep:
            iy, ix = divmod(int(j), n_in)
            rows.append((scene, sy * shard + iy * chunk, sx * shard + ix * chunk))
        counts.append(h[keep])
    k = hist.shape[-1]
    a = np.asarray(rows, dtype=np.int64).reshape(-1, 3)
    c = np.concatenate(counts) if counts else np.zeros((0, k))
    return Candidates(a[:, 0], a[:, 1], a[:, 2], c.astype(np.int64))


def merge(parts: list[Candidates]) -> Candidates:
    return Candidates(*(np.concatenate([getattr(p, f) for p in parts])
                        for f in ("scene", "y0", "x0", "counts")))


def chunk_weights(counts: np.ndarray, mode: str = "balanced", exponent: float = 1.0
                  ) -> np.ndarray:
    """Sampling probabilities of the candidates (sum to 1)."""
    if mode not in MODES:
        raise ValueError(f"sampler {mode!r}: use {' or '.join(MODES)}")
    n = counts.sum(axis=1).astype(np.float64)
    if mode == "uniform" or exponent == 0:
        w = np.ones(len(counts))
    else:
        total = counts.sum(axis=0).astype(np.float64)
        freq = total / total.sum()
        inv = np.zeros_like(freq)
        present = freq > 0
        inv[present] = freq[present] ** -float(exponent)
        w = (counts / n[:, None]) @ inv
    return w / w.sum()


@dataclass(frozen=True)
class Draw:
    """One planned patch: candidate index, offset inside the chunk, augmentation code
    (0-7: ``code % 4`` quarter turns, then a left-right flip when ``code >= 4``)."""

    candidate: int
    dy: int
    dx: int
    aug: int


def draw(weights: np.ndarray, n: int, rng: np.random.Generator, *,
         chunk: int | np.ndarray, patch: int, augment: bool = True) -> list[Draw]:
    """``n`` patches drawn with replacement by ``weights``; ``chunk`` is the inner
    chunk edge, one for all candidates or one per candidate (scenes may differ)."""
    idx = rng.choice(len(weights), size=n, p=weights)
    span = (np.broadcast_to(np.asarray(chunk), weights.shape)[idx] - patch + 1).clip(min=1)
    dy = rng.integers(0, span)
    dx = rng.integers(0, span)
    aug = rng.integers(0, 8, size=n) if augment else np.zeros(n, dtype=np.int64)
    return [Draw(int(i), int(a), int(b), int(c)) for i, a, b, c in zip(idx, dy, dx, aug,
                                                                        strict=True)]


def class_weights(class_pixels: np.ndarray) -> np.ndarray:
    """Median-frequency balancing: ``median(f) / f_k`` (0 for an absent class)."""
    f = class_pixels / max(class_pixels.sum(), 1)
    w = np.zeros_like(f, dtype=np.float64)
    present = f > 0
    w[present] = np.median(f[present]) / f[present]
    return w
