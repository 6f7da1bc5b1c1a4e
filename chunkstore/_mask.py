"""The mask Zarr (v3) of one prediction run, and its derived STAC item.

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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pystac

from ._grid import ShardGrid
from ._histogram import LABEL_NODATA
from ._scene import codecs, grid_coords, scene_attrs, shard_objects, write_skeleton
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
    """Write the mask skeleton (metadata and coordinates, no shards); replaces ``key``."""
    import dask.array as da
    import xarray as xr

    g = schema.grid
    s, c, k = g.shard, g.chunk, len(schema.classes)
    ys, xs = g.dask_chunks()
    meta = {"grid_mapping": "spatial_ref"}
    variables: dict[str, Any] = {}
    encoding: dict[str, Any] = {}
    for name in schema.products:
        if name == "probability":
            data = da.zeros((k, *g.shape), dtype="uint8", chunks=((k,), ys, xs))
            variables[name] = xr.DataArray(data, dims=("classes", "y", "x"), attrs={
                **meta, "scale_factor": 1 / 255, "long_name": "class probability"})
            encoding[name] = {"chunks": (k, c, c), "shards": (k, s, s), "fill_value": 0}
        else:
            fill = LABEL_NODATA if name == CLASS else 0
            data = da.full(g.shape, fill, dtype="uint8", chunks=(ys, xs))
            attrs: dict[str, Any] = dict(meta)
            if name == CLASS:
                attrs.update({"classes": list(schema.classes), "colors": list(schema.colors),
                              "nodata": LABEL_NODATA, "flag_values": list(range(k)),
                              "flag_meanings": " ".join(n.replace(" ", "_")
                                                        for n in schema.classes)})
            else:
                attrs.update({"scale_factor": 1 / 255,
                              "long_name": {"entropy": "normalized entropy",
                                            "margin": "top-1 minus top-2 probability"}[name]})
            variables[name] = xr.DataArray(data, dims=("y", "x"), attrs=attrs)
            encoding[name] = {"chunks": (c, c), "shards": (s, s), "fill_value": fill}
        encoding[name].update(codecs())
    coords = grid_coords(schema.crs_wkt, schema.transform, g.shape)
    if "probability" in schema.products:
        coords["classes"] = np.array(schema.classes, dtype=object)
    ds = xr.Dataset(variables, coords=coords)
    ds.attrs.update({"satchunk": dict(schema.attrs), "shard": s, "chunk": c,
                     "Conventions": "CF-1.8"})
    write_skeleton(store, key, ds, encoding)


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


def mask_item(scene: dict[str, Any], item_id: str, mask_href: str, scene_href: str,
              spec: Mapping[str, Any], products: Sequence[str], created: datetime,
              properties: Mapping[str, Any] | None = None) -> pystac.Item:
    """A derived item: scene footprint and time, ``derived_from`` the scene, the
    ``classification`` classes and ``mlm`` model metadata, a Zarr asset."""
    from pystac.extensions.classification import Classification, ClassificationExtension

    from ._stac import ZARR_MEDIA_TYPE

    props = {k: v for k, v in scene["properties"].items()
             if k == "datetime" or k.startswith("proj:")}
    classes, colors = list(spec["classes"]), list(spec["colors"])
    arch = dict(spec.get("architecture") or {})
    props.update({
        "created": created.isoformat().replace("+00:00", "Z"),
        "satchunk:kind": "mask",
        "satchunk:scene": scene["id"],
        "satchunk:model_id": f"{spec['name']}-{spec['version']}",
        "satchunk:products": list(products),
        "mlm:name": spec["name"],
        "mlm:architecture": arch.get("kind", "unknown"),
        "mlm:tasks": ["semantic-segmentation"],
        "mlm:framework": "onnxruntime" if arch.get("kind") == "onnx" else "pytorch",
        "mlm:input": [{
            "name": "tiles", "bands": list(spec["bands"]) + list(spec.get("indices", [])),
            "input": {"shape": [-1, len(spec["bands"]) + len(spec.get("indices", [])),
                                spec["tile"], spec["tile"]],
                      "dim_order": ["batch", "channel", "height", "width"],
                      "data_type": "float32"},
            "value_scaling": ([{"type": "z-score", "mean": m, "stddev": s}
                               for m, s in zip(spec["mean"], spec["std"], strict=True)]
                              if spec.get("mean") else None),
        }],
        "mlm:output": [{
            "name": "probabilities", "tasks": ["semantic-segmentation"],
            "result": {"shape": [-1, len(classes), spec["tile"], spec["tile"]],
                       "dim_order": ["batch", "channel", "height", "width"],
                       "data_type": "float32"},
            "classification:classes": [{"value": i, "name": n, "color_hint": c.lstrip("#")}
                                       for i, (n, c) in enumerate(zip(classes, colors,
                                                                      strict=True))],
        }],
        **dict(properties or {}),
    })
    item = pystac.Item(id=item_id, geometry=scene["geometry"], bbox=scene["bbox"],
                       datetime=pystac.utils.str_to_datetime(scene["properties"]["datetime"]),
                       properties=props, collection=scene["collection"])
    item.stac_extensions.append(
        "https://stac-extensions.github.io/mlm/v1.4.0/schema.json")
    if any(k.startswith("proj:") for k in props):
        item.stac_extensions.append(
            "https://stac-extensions.github.io/projection/v2.0.0/schema.json")
    asset = pystac.Asset(href=mask_href, media_type=ZARR_MEDIA_TYPE, roles=["data"],
                         title="mask Zarr (" + ", ".join(products) + ")")
    item.add_asset("mask", asset)
    ClassificationExtension.ext(asset, add_if_missing=True).classes = [
        Classification.create(value=i, name=n.replace(" ", "_"), description=n,
                              color_hint=c.lstrip("#").upper())
        for i, (n, c) in enumerate(zip(classes, colors, strict=True))]
    item.add_link(pystac.Link("derived_from", scene_href, media_type="application/geo+json",
                              title=scene["id"]))
    return item
