"""The STAC item of a finished mask: derived from its scene, with the ``classification``
classes and the ``mlm`` (machine learning model) fields of the model that made it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import pystac

from chunkstore import ZARR_MEDIA_TYPE


def mask_item(scene: dict[str, Any], item_id: str, mask_href: str, scene_href: str,
              spec: Mapping[str, Any], products: Sequence[str], created: datetime,
              properties: Mapping[str, Any] | None = None) -> pystac.Item:
    """A derived item: scene footprint and time, ``derived_from`` the scene, the
    ``classification`` classes and ``mlm`` model metadata, a Zarr asset."""
    from pystac.extensions.classification import Classification, ClassificationExtension

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
