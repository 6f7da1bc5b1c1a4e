"""Spatially disjoint train / val / test split by shard. Pure.

Whole shards go to one split, so no patch of one split overlaps another's.
The split depends only on the seed and the labelled shards, and prefers a cut
in which every split holds every class; the trainer stores it with the
checkpoint, and evaluation reads it from there.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np

SPLITS = ("train", "val", "test")
ShardId = tuple[str, str, int, int]  # (collection, item, shard_y, shard_x)


class SplitError(ValueError):
    """Too few shards to hold out validation and test shards."""


def split_shards(shards: Iterable[ShardId], seed: int,
                 fractions: Sequence[float] = (0.7, 0.15, 0.15),
                 classes_of: Mapping[ShardId, np.ndarray] | None = None,
                 attempts: int = 200) -> dict[str, list[ShardId]]:
    """Shards per split: a seeded permutation cut by ``fractions`` (train, val, test);
    val and test get at least one shard each.

    With ``classes_of`` (per shard, which classes it holds), the first of
    ``attempts`` seeded permutations whose every split holds every class is used;
    when none does (a class in fewer than 3 shards), the one whose training split
    holds the most classes, then val and test the most.
    """
    ordered = sorted(set(shards))
    n = len(ordered)
    if n < 3:
        raise SplitError(f"{n} labelled shard(s): a train/val/test split needs at least 3; "
                         "ingest with a smaller --shard or add scenes")
    n_val = max(1, round(fractions[1] * n))
    n_test = max(1, round(fractions[2] * n))
    while n_val + n_test > n - 1:  # keep at least one training shard
        if n_val >= n_test:
            n_val -= 1
        else:
            n_test -= 1

    def cut(attempt: int) -> dict[str, list[ShardId]]:
        perm = np.random.default_rng([seed, attempt]).permutation(n)
        picked = [ordered[i] for i in perm]
        return {"train": sorted(picked[n_val + n_test:]), "val": sorted(picked[:n_val]),
                "test": sorted(picked[n_val:n_val + n_test])}

    if classes_of is None:
        return cut(0)
    def coverage(split: dict[str, list[ShardId]]) -> tuple[int, int]:
        held = {k: np.any([classes_of[s] for s in v], axis=0).sum() for k, v in split.items()}
        return int(held["train"]), int(held["val"] + held["test"])

    everywhere = int(np.any([classes_of[s] for s in ordered], axis=0).sum())
    best, best_cov = cut(0), (-1, -1)
    for attempt in range(attempts):
        split = cut(attempt)
        cov = coverage(split)
        if cov == (everywhere, 2 * everywhere):
            return split
        if cov > best_cov:
            best, best_cov = split, cov
    return best
