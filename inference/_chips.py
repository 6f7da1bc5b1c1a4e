"""Chips: scenes of one shard (datasets of 120-512 px tiles come as thousands of them),
several to a Dask task, each predicted and committed whole inside the task, so a chip
costs its pixels and a few store round trips, not a graph of its own."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from chunkstore import Credentials, Store, write_mask_shard
from models import Radiometry

from ._block import products, shard_probs
from ._commit import Checked, MaskPlan, commit_prediction
from ._runner import ModelRef, PredictJob, read_window, trim_heap, worker_model
from ._tiling import TilePlan


@dataclass(frozen=True)
class ChipBatch:
    """One unit of Dask work: predict and commit every chip of ``chips``."""

    store: Store  # without credentials
    chips: tuple[tuple[Checked, MaskPlan], ...]
    model: ModelRef
    products: tuple[str, ...]
    batch: int | None

    def key(self) -> str:
        """What identifies the task's work (its Dask key is made from it)."""
        return "|".join([self.store.uri, self.model.ref, *(p.key for _, p in self.chips)])


def _run(store: Store, job: PredictJob, tiles: TilePlan, adapter: Any,
         left: Sequence[tuple[int, int]]) -> None:
    """The chip's one shard, if left: no border tiles, no pieces."""
    for shard in left:
        probs, valid = shard_probs(lambda *w: read_window(job, store, w), job.names, adapter,
                                   job.radiometry, tiles, shard, (), job.batch)
        write_mask_shard(store, job.mask_key, job.schema, *shard,
                         products(probs, valid, job.schema.products))


def predict_chips(task: ChipBatch, credentials: Credentials) -> list[dict[str, Any]]:
    """One task: every chip of ``task``, one after the other; their summaries."""
    store = task.store.with_credentials(credentials)
    adapter = worker_model(task.model, credentials)
    out = []
    for c, plan in task.chips:
        job = PredictJob(task.store, c.info.key, plan.key, c.idx, c.names,
                         Radiometry(c.info.scale, c.info.offset, c.info.fill), plan.schema,
                         task.model, task.batch)
        tiles = TilePlan.of(adapter.spec, c.info.grid.shape, c.info.grid.shard)
        out.append(commit_prediction(
            store, c, plan, task.model, adapter.spec,
            lambda left, _ref, job=job, tiles=tiles: _run(store, job, tiles, adapter, left),
            refresh=False))
    trim_heap()
    return out
