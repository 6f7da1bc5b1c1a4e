"""From labelled scenes to a split and sampling candidates (reads histograms only)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from chunkstore import InputError, Store

from ._data import SceneRef, read_histogram
from ._sampler import Candidates, chunk_candidates, merge
from ._split import ShardId, SplitError, split_shards
from ._stream import PlannedPatch


@dataclass(frozen=True)
class Plan:
    scenes: list[SceneRef]
    classes: tuple[str, ...]
    split: dict[str, list[ShardId]]
    candidates: dict[str, Candidates]  # per split

    def patches(self, split: str) -> list[PlannedPatch]:
        """Every labelled inner chunk of ``split`` once, whole, in a fixed order."""
        c = self.candidates[split]
        return [PlannedPatch(int(s), int(y), int(x))
                for s, y, x in zip(c.scene, c.y0, c.x0, strict=True)]

    def split_json(self, seed: int) -> dict:
        return {"seed": seed, **{k: [list(s) for s in v] for k, v in self.split.items()}}


def _split_ground(scenes: Sequence[SceneRef], labelled: list[ShardId],
                  present: dict[ShardId, np.ndarray], seed: int) -> dict[str, list[ShardId]]:
    """Split by ground, not by scene: shards of scenes on the same grid (several dates
    of one tile) at the same (shard_y, shard_x) cover the same ground and go to the
    same split."""
    grid = {(s.collection, s.item): s.grid_id for s in scenes}
    members: dict[ShardId, list[ShardId]] = {}
    for sid in labelled:
        ground = ("ground", grid[sid[:2]], sid[2], sid[3])
        members.setdefault(ground, []).append(sid)
    holds = {g: np.any([present[m] for m in ms], axis=0) for g, ms in members.items()}
    try:
        by_ground = split_shards(list(members), seed, classes_of=holds)
    except SplitError as exc:
        raise InputError(str(exc)) from None
    return {k: sorted(m for g in v for m in members[g]) for k, v in by_ground.items()}


def make_plan(store: Store, scenes: Sequence[SceneRef], seed: int,
              split: dict[str, list[ShardId]] | None = None) -> Plan:
    """Split the labelled shards (or use ``split``) and list each split's candidates."""
    hists = [read_histogram(store, s) for s in scenes]
    classes = scenes[0].classes
    present: dict[ShardId, np.ndarray] = {}  # which classes each labelled shard holds
    for s, h in zip(scenes, hists, strict=True):
        per_shard = h.sum(axis=(2, 3))
        for sy, sx in zip(*np.nonzero(per_shard.sum(axis=-1)), strict=True):
            present[(s.collection, s.item, int(sy), int(sx))] = per_shard[sy, sx] > 0
    labelled = sorted(present)
    if not labelled:
        raise InputError("no valid patch: every label pixel of "
                         f"{', '.join(sorted({s.collection for s in scenes}))} is nodata; "
                         "check the labels (satchunk catalog show ITEM)")
    total = sum(h.sum(axis=(0, 1, 2, 3)) for h in hists)
    absent = [c for c, n in zip(classes, total, strict=True) if n == 0]
    if absent:
        raise InputError(f"class(es) {', '.join(absent)} have no labelled pixel in any scene: "
                         "add scenes that contain them or relabel with fewer classes")
    if split is None:
        split = _split_ground(scenes, labelled, present, seed)
    where = {(s.collection, s.item): i for i, s in enumerate(scenes)}
    cands = {}
    for name, shards in split.items():
        parts = []
        for i, s in enumerate(scenes):
            mine = [(sy, sx) for c, it, sy, sx in shards if where.get((c, it)) == i]
            if mine:
                parts.append(chunk_candidates(i, hists[i], mine, s.shard, s.chunk))
        if not parts:
            raise InputError(f"the {name} split has no labelled shard of these scenes; "
                             "train again to make a new split")
        cands[name] = merge(parts)
    return Plan(list(scenes), classes, split, cands)
