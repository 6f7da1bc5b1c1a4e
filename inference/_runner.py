"""The distributed prediction job: ``map_overlap`` over shard-aligned blocks of a
scene, one mask shard written per block, then the derived STAC item.

Credentials are captured on the client and handed to every task as an explicit
argument; the store objects in the graph carry none.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from chunkstore import (
    Credentials,
    MaskSchema,
    Store,
    write_mask_shard,
)
from models import Adapter, load_model

from ._block import Radiometry, predict_window, products


@dataclass(frozen=True)
class ModelRef:
    """What a worker needs to load a model: the reference, and for a checkpoint in
    the store, that store (without credentials)."""

    ref: str
    store: Store | None = None
    threads: int = 1

    def load(self, credentials: Credentials | None = None) -> Adapter:
        if self.store is None:
            return load_model(self.ref, threads=self.threads)
        store = self.store.with_credentials(credentials) if credentials else self.store

        def read(name: str) -> bytes:
            if not store.exists(name):
                raise FileNotFoundError(name)
            return store.read_bytes(name)

        return load_model(self.ref, read=read, threads=self.threads)


_MODELS: dict[ModelRef, Adapter] = {}
_MODELS_LOCK = threading.Lock()


def worker_model(ref: ModelRef, credentials: Credentials | None) -> Adapter:
    """The model of ``ref``, loaded once per (worker) process."""
    with _MODELS_LOCK:
        if ref not in _MODELS:
            _MODELS[ref] = ref.load(credentials)
        return _MODELS[ref]


@dataclass(frozen=True)
class PredictJob:
    store: Store  # without credentials
    scene_key: str
    mask_key: str
    band_index: tuple[int, ...]
    names: tuple[str, ...]  # the model's names for the selected bands
    radiometry: Radiometry
    dtype: str  # stored dtype of the reflectance
    y_edges: tuple[int, ...]
    x_edges: tuple[int, ...]
    schema: MaskSchema
    model: ModelRef
    batch: int


def block_edges(size: int, shard: int, depth: int) -> tuple[int, ...]:
    """Block boundaries along one axis, on shard boundaries. A block is one shard,
    or as many as it takes to be at least ``depth`` deep (Dask overlaps need that),
    and a thinner last block is merged into its neighbour."""
    step = shard * max(1, -(-depth // shard))
    edges = list(range(0, size, step)) + [size]
    if len(edges) > 2 and edges[-1] - edges[-2] < depth:
        del edges[-2]
    return tuple(edges)


def _read_block(job: PredictJob, credentials: Credentials, block_info: Any = None) -> np.ndarray:
    import zarr

    _, (y0, y1), (x0, x1) = block_info[None]["array-location"]
    store = job.store.with_credentials(credentials)
    arr = zarr.open_array(store.zarr_store(f"{job.scene_key}/reflectance", read_only=True),
                          zarr_format=3, mode="r")
    # Every inner chunk holds all bands, so all bands are decoded anyway; whole shards
    # read with plain slices are one GET each, where a band subset would make zarr
    # fetch every inner chunk with a request of its own (~40x slower on S3).
    block = arr[:, y0:y1, x0:x1]
    idx = list(job.band_index)
    return block if idx == list(range(block.shape[0])) else block[idx]


def _predict_block(raw: np.ndarray, job: PredictJob, credentials: Credentials,
                   overlap: tuple[int, int], block_info: Any = None) -> np.ndarray:
    _, i, j = block_info[0]["chunk-location"]
    y0, y1 = job.y_edges[i], job.y_edges[i + 1]
    x0, x1 = job.x_edges[j], job.x_edges[j + 1]
    origin = (y0 - (overlap[0] if i > 0 else 0), x0 - (overlap[1] if j > 0 else 0))
    adapter = worker_model(job.model, credentials)
    g = job.schema.grid
    probs, valid = predict_window(raw, job.names, adapter, job.radiometry, origin,
                                  (y0, x0, y1 - y0, x1 - x0), g.shape, job.batch)
    out = products(probs, valid, job.schema.products)
    store = job.store.with_credentials(credentials)
    n = 0
    for sy in range(y0 // g.shard, -(-y1 // g.shard)):
        for sx in range(x0 // g.shard, -(-x1 // g.shard)):
            r0, c0, h, w = g.window(sy, sx)
            part = {k: v[..., r0 - y0:r0 - y0 + h, c0 - x0:c0 - x0 + w] for k, v in out.items()}
            write_mask_shard(store, job.mask_key, job.schema, sy, sx, part)
            n += 1
    return np.array([[n]], dtype=np.int64)


def mask_graph(job: PredictJob, credentials: Credentials, depth: int) -> Any:
    """The Dask array of per-block results (shards written) for the whole scene."""
    import dask.array as da

    ychunks = tuple(np.diff(job.y_edges).tolist())
    xchunks = tuple(np.diff(job.x_edges).tolist())
    raw = da.map_blocks(_read_block, job=job, credentials=credentials,
                        chunks=((len(job.band_index),), ychunks, xchunks),
                        dtype=job.dtype, meta=np.empty((0, 0, 0), dtype=job.dtype),
                        name=f"read-{_token(job)}")
    dy = depth if len(ychunks) > 1 else 0
    dx = depth if len(xchunks) > 1 else 0
    return da.map_overlap(
        _predict_block, raw, depth={0: 0, 1: dy, 2: dx}, boundary="none", trim=False,
        allow_rechunk=False, drop_axis=0, chunks=((1,) * len(ychunks), (1,) * len(xchunks)),
        dtype=np.int64, meta=np.empty((0, 0), dtype=np.int64), job=job,
        credentials=credentials, overlap=(dy, dx), name=f"predict-{_token(job)}")


def _token(job: PredictJob) -> str:
    return hashlib.sha1(f"{job.store.uri}|{job.mask_key}|{job.model.ref}".encode()).hexdigest()[:12]
