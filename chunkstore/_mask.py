"""The mask Zarr (v3) of one prediction run: create, write one shard, find finished
shards, read its metadata.

Layout of ``masks/<collection>/<item>/<model-id>.zarr``, same grid, sharding and
georeferencing as the scene::

    class        (y, x)         uint8, 255 = nodata; class names and colours in attrs
    probability  (classes, y, x)  uint8, probability * 255 (on request)
    entropy      (y, x)         uint8, normalized entropy * 255 (on request)
    margin       (y, x)         uint8, (top-1 - top-2 probability) * 255 (on request)

A shard's products are written first and ``class`` last, so a ``class`` shard
object marks the shard done.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._grid import ShardGrid
from ._histogram import LABEL_NODATA
from ._manifest import verify
from ._scene import (
    array_meta,
    codecs,
    grid_coords,
    grid_of,
    read_georef,
    scene_attrs,
    shard_objects,
)
from ._store import Store

CLASS = "class"
PRODUCTS = ("class", "probability", "entropy", "margin")


@dataclass(frozen=True)
class MaskSchema:
    grid: ShardGrid
    crs_wkt: str
    transform: tuple[float, float, float, float, float, float]
    classes: tuple[str, ...]
    colors: tuple[str, ...]
    products: tuple[str, ...] = (CLASS,)
    attrs: Mapping[str, Any] = field(default_factory=dict, hash=False, compare=False)


def create_mask(store: Store, key: str, schema: MaskSchema,
                listed: Sequence[str] | None = None) -> None:
    """Write the mask skeleton (metadata and coordinates, no shards); replaces ``key``,
    whose objects ``listed`` are, when they were just listed.

    Laid out by zarr in memory, as xarray + rioxarray read it (CF attributes,
    ``dimension_names``, ``spatial_ref``), and written as a few concurrent PUTs, the
    group's ``zarr.json`` last (a mask whose group is there is whole): zarr writing
    to S3 itself costs ~35 requests and ~0.1 s a mask, most of a small chip's time."""
    objects = _layout(schema, coords=True)
    group = objects.pop("zarr.json")
    store.delete_keys(store.list(key) if listed is None else list(listed))
    store.write_many({f"{key}/{k}": v for k, v in objects.items()})
    store.write_bytes(f"{key}/zarr.json", group)


def write_mask_shard(store: Store, key: str, schema: MaskSchema, sy: int, sx: int,
                     products: Mapping[str, np.ndarray]) -> None:
    """Write one shard of every product as whole-shard objects, ``class`` last.

    The shards are encoded by zarr in memory against the mask's own array metadata
    (the same :func:`_layout` that :func:`create_mask` wrote), then PUT: one request
    per product, none to read the metadata back."""
    import zarr

    r0, c0, h, w = schema.grid.window(sy, sx)
    mem = {k: _buffer(v) for k, v in _arrays(schema).items()}
    group = zarr.open_group(store=zarr.storage.MemoryStore(mem), mode="r+", zarr_format=3)
    for name in schema.products:
        arr = group[name].with_config({"write_empty_chunks": True})
        block = products[name]
        if block.shape[-2:] != (h, w):
            raise ValueError(f"mask shard {sy},{sx}: {name} shape {block.shape} != {(h, w)}")
        if block.ndim == 3:
            arr[:, r0:r0 + h, c0:c0 + w] = block
        else:
            arr[r0:r0 + h, c0:c0 + w] = block
    shards = {f"{key}/{k}": v.to_bytes() for k, v in mem.items() if "/c/" in k}
    last = [k for k in shards if k.startswith(f"{key}/{CLASS}/c/")]
    store.write_many({k: v for k, v in shards.items() if k not in last})
    store.write_many({k: shards[k] for k in last})


@functools.lru_cache(maxsize=16)
def _arrays(schema: MaskSchema) -> dict[str, bytes]:
    """:func:`_layout` without coordinates, kept for the next shard of the same grid
    and products (``attrs`` do not take part in a schema's hash)."""
    return _layout(schema, coords=False)


def _buffer(data: bytes) -> Any:
    from zarr.core.buffer import default_buffer_prototype

    return default_buffer_prototype().buffer.from_bytes(data)


def _layout(schema: MaskSchema, coords: bool) -> dict[str, bytes]:
    """The mask Zarr's objects without shards, keyed relative to its root: the group,
    the product arrays' metadata and, with ``coords``, the coordinates."""
    import zarr

    g = schema.grid
    s, c, k = g.shard, g.chunk, len(schema.classes)
    mem: dict[str, Any] = {}
    root = zarr.create_group(store=zarr.storage.MemoryStore(mem), zarr_format=3,
                             attributes={"satchunk": dict(schema.attrs), "shard": s,
                                         "chunk": c, "Conventions": "CF-1.8"})
    common = {"grid_mapping": "spatial_ref", "coordinates": "spatial_ref"}
    for name in schema.products:
        if name == "probability":
            shape, chunks, shards = (k, *g.shape), (k, c, c), (k, s, s)
            dims, fill = ("classes", "y", "x"), 0
            attrs = {**common, "scale_factor": 1 / 255, "long_name": "class probability"}
        elif name == CLASS:
            shape, chunks, shards, dims, fill = g.shape, (c, c), (s, s), ("y", "x"), LABEL_NODATA
            attrs = {**common, "classes": list(schema.classes), "colors": list(schema.colors),
                     "nodata": LABEL_NODATA, "flag_values": list(range(k)),
                     "flag_meanings": " ".join(n.replace(" ", "_") for n in schema.classes)}
        else:
            shape, chunks, shards, dims, fill = g.shape, (c, c), (s, s), ("y", "x"), 0
            attrs = {**common, "scale_factor": 1 / 255,
                     "long_name": {"entropy": "normalized entropy",
                                   "margin": "top-1 minus top-2 probability"}[name]}
        root.create_array(name, shape=shape, dtype="uint8", chunks=chunks, shards=shards,
                          fill_value=fill, attributes=attrs, dimension_names=dims,
                          **codecs())
    if coords:
        grid = grid_coords(schema.crs_wkt, schema.transform, g.shape)
        for axis in ("y", "x"):
            _, values, attrs = grid[axis]
            arr = root.create_array(axis, shape=values.shape, dtype="float64",
                                    fill_value=float("nan"), attributes=attrs,
                                    dimension_names=(axis,), compressors=None)
            arr[:] = values
        ref = grid["spatial_ref"]
        root.create_array("spatial_ref", shape=(), dtype="int64", fill_value=0,
                          attributes=dict(ref.attrs), compressors=None)
        if "probability" in schema.products:
            names = root.create_array("classes", shape=(k,), dtype=str, fill_value="",
                                      dimension_names=("classes",), compressors=None)
            names[:] = np.array(schema.classes, dtype=object)
    return {key: buf.to_bytes() for key, buf in mem.items()}


def done_mask_shards(store: Store, key: str, listed: Sequence[str] | None = None
                     ) -> set[tuple[int, int]]:
    """Shards whose ``class`` object exists (the last object a shard task writes);
    ``listed``: the mask's objects, when they were just listed."""
    return shard_objects(store, f"{key}/{CLASS}/c", listed=listed)


mask_attrs = scene_attrs  # the group attributes of a mask Zarr, or None


@dataclass(frozen=True)
class MaskInfo:
    """What a reader needs to know of one mask Zarr (no pixels): see :func:`read_mask`."""

    key: str
    shape: tuple[int, int]  # height, width
    grid: ShardGrid
    classes: tuple[str, ...]
    colors: tuple[str, ...]
    products: tuple[str, ...]  # those present, in the order of PRODUCTS
    crs_wkt: str
    transform: tuple[float, ...]  # affine a..f
    attrs: Mapping[str, Any] = field(default_factory=dict, hash=False, compare=False)  # group


def read_mask(store: Store, key: str) -> MaskInfo:
    """The metadata of the mask Zarr at ``key``: shape, grid, class names and colours,
    the products present, georeferencing and group attributes. A mask without its
    ``class`` array is a :class:`NotFoundError`, a damaged one (:func:`verify`) a
    CorruptObjectError."""
    from .errors import NotFoundError

    cmeta = array_meta(store, f"{key}/{CLASS}")
    if cmeta is None:
        raise NotFoundError(f"no mask Zarr at {store.url(key)}")
    verify(store, key)
    attrs = mask_attrs(store, key) or {}
    h, w = cmeta["shape"]
    products = tuple(p for p in PRODUCTS
                     if p == CLASS or store.exists(f"{key}/{p}/zarr.json"))
    crs_wkt, transform = read_georef(store, key)
    cattrs: dict[str, Any] = cmeta.get("attributes", {})
    return MaskInfo(key, (int(h), int(w)), grid_of(attrs, cmeta["shape"]),
                    tuple(str(c) for c in cattrs.get("classes", [])),
                    tuple(str(c) for c in cattrs.get("colors", [])), products, crs_wkt,
                    transform, attrs)
