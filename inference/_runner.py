"""The distributed prediction job, in two kinds of task per shard.

- A *shared-tile* task (``predict_shared``) runs the tiles that a shard owns and that
  reach into its neighbours (``_tiling``), reading just the strips they cover, and
  writes each shard they reach its blended piece (``scratch/<mask key>/``).
- A *shard* task (``predict_shard``), once the pieces that reach its shard are
  written, reads the shard, runs its inner tiles, adds the pieces, and writes exactly
  that shard of the mask.

So every tile runs once, the overlap travels through the store rather than between
tasks (Dask's ``map_overlap`` keeps a neighbour's block in worker memory until
every block that borrows from it has run, which grows with the scene's width), and
a shard task reads its own shard only.

Credentials are captured on the client and handed to every task as an explicit
argument; the store objects in the graph carry none.
"""

from __future__ import annotations

import ctypes
import dataclasses
import hashlib
import threading
from dataclasses import dataclass

import numpy as np

from chunkstore import (
    Credentials,
    MaskSchema,
    Store,
    write_mask_shard,
)
from models import CONFIG, Adapter, Radiometry, Runtime, load_model, models_folder

from ._block import products, shard_probs, shared_probs
from ._parts import part_key, read_part, write_part
from ._tiling import TilePlan


@dataclass(frozen=True)
class ModelRef:
    """What a worker needs to load a model: the reference, for a checkpoint in the
    store that store (without credentials), for an untrained preset the bands it reads
    (None: its default)."""

    ref: str
    store: Store | None = None
    threads: int = 1
    runtime: Runtime = Runtime()
    bands: tuple[str, ...] | None = None

    def load(self, credentials: Credentials | None = None) -> Adapter:
        if self.store is None:
            return load_model(self.ref, threads=self.threads, runtime=self.runtime,
                              bands=self.bands)
        store = self.store.with_credentials(credentials) if credentials else self.store

        def read(name: str) -> bytes:
            if not store.exists(name):
                raise FileNotFoundError(name)
            return store.read_bytes(name)

        return load_model(self.ref, read=read, threads=self.threads, runtime=self.runtime,
                          nearby=lambda: checkpoints_near(store))


def checkpoints_near(store: Store) -> list[str]:
    """The checkpoints (``NAME/VERSION`` folders holding a config) in the ``models``
    folder above the checkpoint folder ``store``, as URIs."""
    root = models_folder(store.uri)
    if root is None:
        return []
    keys = dataclasses.replace(store, uri=root).list("")
    return [f"{root}/{k.removesuffix('/' + CONFIG)}" for k in keys
            if k.count("/") == 2 and k.endswith("/" + CONFIG)]


_MODELS: dict[ModelRef, Adapter] = {}
_MODELS_LOCK = threading.Lock()


def worker_model(ref: ModelRef, credentials: Credentials | None) -> Adapter:
    """The model of ``ref``, loaded once per (worker) process and device; the worker's
    threads share it."""
    import torch

    with _MODELS_LOCK:
        if ref not in _MODELS:
            _MODELS[ref] = ref.load(credentials)
        adapter = _MODELS[ref]
    torch.set_num_threads(ref.threads)  # per process, not per model: the block function's too
    return adapter


@dataclass(frozen=True)
class PredictJob:
    store: Store  # without credentials
    scene_key: str
    mask_key: str
    band_index: tuple[int, ...]
    names: tuple[str, ...]  # the model's names for the selected bands
    radiometry: Radiometry
    schema: MaskSchema
    model: ModelRef
    batch: int | None  # None: models.call_batch


def read_window(job: PredictJob, store: Store, window: tuple[int, int, int, int]
                 ) -> np.ndarray:
    """The model's bands of ``window`` = (y0, y1, x0, x1).

    Every inner chunk holds all bands, so all bands are decoded anyway; a plain slice
    reads a whole shard with one GET, where a band subset would make zarr fetch every
    inner chunk with a request of its own (~40x slower on S3). When the model reads
    fewer bands than the scene has, the window is read one shard at a time and only
    the model's bands are kept, so the all-band buffer is one shard, not the shard and
    its context (a 4-band model on a 13-band scene: 170 MB -> 109 MB at 2048 px).
    """
    import zarr

    y0, y1, x0, x1 = window
    key = f"{job.scene_key}/reflectance"
    arr = zarr.open_array(store.zarr_store(key, read_only=True), zarr_format=3, mode="r")
    if list(job.band_index) == list(range(arr.shape[0])):
        return np.asarray(arr[:, y0:y1, x0:x1])
    sy, sx = (arr.shards or arr.chunks)[1:]
    out = np.empty((len(job.band_index), y1 - y0, x1 - x0), dtype=arr.dtype)
    for r0 in range(y0 - y0 % sy, y1, sy):
        for c0 in range(x0 - x0 % sx, x1, sx):
            a0, a1, b0, b1 = max(r0, y0), min(r0 + sy, y1), max(c0, x0), min(c0 + sx, x1)
            part = np.asarray(arr[:, a0:a1, b0:b1])
            for i, band in enumerate(job.band_index):
                out[i, a0 - y0:a1 - y0, b0 - x0:b1 - x0] = part[band]
            del part
    return out


@dataclass(frozen=True)
class ShardPrediction:
    """One unit of Dask work: predict and write mask shard (sy, sx) of ``job``."""

    job: PredictJob
    sy: int
    sx: int


@dataclass(frozen=True)
class SharedTiles:
    """One unit of Dask work: the shared tiles of ``group`` that shard (sy, sx) of
    ``job`` owns."""

    job: PredictJob
    sy: int
    sx: int
    group: str


def plan_of(job: PredictJob, adapter: Adapter) -> TilePlan:
    return TilePlan.of(adapter.spec, job.schema.grid.shape, job.schema.grid.shard)


def predict_shared(task: SharedTiles, credentials: Credentials) -> None:
    """One task: run one group of the shared tiles shard (sy, sx) owns, from the strip
    of the scene they cover, and write each shard they reach its piece."""
    job, owner, group = task.job, (task.sy, task.sx), task.group
    store = job.store.with_credentials(credentials)
    adapter = worker_model(job.model, credentials)
    plan = plan_of(job, adapter)
    ys, xs = plan.groups(owner)[group]
    (y0, _, x0, _), acc = shared_probs(lambda *w: read_window(job, store, w), job.names,
                                       adapter, job.radiometry, plan, ys, xs, job.batch)
    host = acc.cpu().numpy()
    del acc
    for target, (r0, r1, c0, c1) in plan.targets(owner, group):
        write_part(store, part_key(job.mask_key, owner, group, target), (r0, r1, c0, c1),
                   host[:, r0 - y0:r1 - y0, c0 - x0:c1 - x0])
    del host
    trim_heap()


def predict_shard(task: ShardPrediction, credentials: Credentials) -> None:
    """One task: read the shard, run its inner tiles, add the pieces of the shared
    tiles that reach it, write the mask shard."""
    job = task.job
    store = job.store.with_credentials(credentials)
    adapter = worker_model(job.model, credentials)
    plan = plan_of(job, adapter)
    shard = (task.sy, task.sx)
    k = adapter.spec.num_classes
    pieces = ((rect, read_part(store, part_key(job.mask_key, owner, group, shard), rect, k))
              for owner, group, rect in plan.sources(shard))
    probs, valid = shard_probs(lambda *w: read_window(job, store, w), job.names, adapter,
                               job.radiometry, plan, shard, pieces, job.batch)
    write_mask_shard(store, job.mask_key, job.schema, task.sy, task.sx,
                     products(probs, valid, job.schema.products))
    del probs, valid
    trim_heap()


def trim_heap() -> None:
    """Give the shard's freed arrays back to the OS: glibc otherwise keeps a growing,
    fragmented heap over many shards and the worker's RSS creeps up."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def task_key(job: PredictJob) -> str:
    """The Dask key prefix of a prediction's shard tasks."""
    return "predict-" + hashlib.sha1(
        f"{job.store.uri}|{job.mask_key}|{job.model.ref}".encode()).hexdigest()[:12]
