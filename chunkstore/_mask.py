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

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._grid import ShardGrid
from ._histogram import LABEL_NODATA
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


def create_mask(store: Store, key: str, schema: MaskSchema) -> None:
    """Write the mask skeleton (metadata and coordinates, no shards); replaces ``key``.

    Written with zarr directly, as xarray + rioxarray read it (CF attributes,
    ``dimension_names``, ``spatial_ref``): the xarray route costs ~0.2 s a mask, which
    is most of a small chip's prediction."""
    import zarr

    g = schema.grid
    s, c, k = g.shard, g.chunk, len(schema.classes)
    store.delete(key)
    root = zarr.create_group(store=store.zarr_store(key), zarr_format=3, overwrite=True,
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
    coords = grid_coords(schema.crs_wkt, schema.transform, g.shape)
    for axis in ("y", "x"):
        _, values, attrs = coords[axis]
        arr = root.create_array(axis, shape=values.shape, dtype="float64",
                                fill_value=float("nan"), attributes=attrs,
                                dimension_names=(axis,), compressors=None)
        arr[:] = values
    ref = coords["spatial_ref"]
    root.create_array("spatial_ref", shape=(), dtype="int64", fill_value=0,
                      attributes=dict(ref.attrs), compressors=None)
    if "probability" in schema.products:
        names = root.create_array("classes", shape=(k,), dtype=str, fill_value="",
                                  dimension_names=("classes",), compressors=None)
        names[:] = np.array(schema.classes, dtype=object)


def write_mask_shard(store: Store, key: str, schema: MaskSchema, sy: int, sx: int,
                     products: Mapping[str, np.ndarray]) -> None:
    """Write one shard of every product as whole-shard objects, ``class`` last."""
    import zarr

    r0, c0, h, w = schema.grid.window(sy, sx)
    group = zarr.open_group(store=store.zarr_store(key), mode="r+", zarr_format=3)
    for name in sorted(schema.products, key=lambda n: n == CLASS):
        arr = group[name].with_config({"write_empty_chunks": True})
        block = products[name]
        if block.shape[-2:] != (h, w):
            raise ValueError(f"mask shard {sy},{sx}: {name} shape {block.shape} != {(h, w)}")
        if block.ndim == 3:
            arr[:, r0:r0 + h, c0:c0 + w] = block
        else:
            arr[r0:r0 + h, c0:c0 + w] = block


def done_mask_shards(store: Store, key: str) -> set[tuple[int, int]]:
    """Shards whose ``class`` object exists (the last object a shard task writes)."""
    return shard_objects(store, f"{key}/{CLASS}/c")


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
    ``class`` array is a :class:`NotFoundError`."""
    from .errors import NotFoundError

    cmeta = array_meta(store, f"{key}/{CLASS}")
    if cmeta is None:
        raise NotFoundError(f"no mask Zarr at {store.url(key)}")
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
