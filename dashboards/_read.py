"""What the dashboard shows, read from the store through ``chunkstore`` only."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np

from chunkstore import (
    Store,
    crs_name,
    list_collections,
    list_items,
    list_runs,
    mask_key,
    open_scene,
    read_item,
    scene_key,
)

from ._quicklook import palette

RGB = ("red", "green", "blue")


def is_mask(item: dict[str, Any]) -> bool:
    return item["properties"].get("satchunk:kind") == "mask"


def scene_row(item: dict[str, Any], masks: list[dict[str, Any]]) -> dict[str, Any]:
    """One scene as the catalog lists it."""
    from pyproj import Geod

    p = item["properties"]
    asset = item.get("assets", {}).get("zarr", {})
    area, _ = Geod(ellps="WGS84").geometry_area_perimeter(_shape(item["geometry"]))
    return {
        "collection": item["collection"], "id": item["id"], "datetime": p.get("datetime"),
        "sensor": p.get("satchunk:sensor") or p.get("platform") or "-",
        "shape": p.get("proj:shape"), "bands": len(asset.get("eo:bands", [])),
        "area_km2": abs(area) / 1e6, "cloud_cover": p.get("eo:cloud_cover"),
        "crs": crs_name(p),
        "label_classes": p.get("satchunk:label_classes"),
        "label_source": p.get("satchunk:label_source"),
        "masks": [m["properties"]["satchunk:model_id"] for m in masks],
        "geometry": item["geometry"], "zarr": asset.get("href"),
    }


def catalog(store: Store) -> dict[str, list[dict[str, Any]]]:
    """Every collection's scenes (with their masks' model ids), by collection."""
    out = {}
    for c in list_collections(store):
        items = list_items(store, c)
        masks: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for m in filter(is_mask, items):
            masks[m["properties"]["satchunk:scene"]].append(m)
        out[c] = [scene_row(i, masks[i["id"]]) for i in items if not is_mask(i)]
    return out


def item_detail(store: Store, collection: str, item: str) -> dict[str, Any]:
    """A scene's catalog row, its STAC dict and its masks (model id, classes, colours)."""
    scene = read_item(store, collection, item)
    masks = [m for m in list_items(store, collection)
             if is_mask(m) and m["properties"]["satchunk:scene"] == item]
    row = scene_row(scene, masks)
    overlays = []
    for m in masks:
        classes = m["assets"]["mask"].get("classification:classes", [])
        overlays.append({
            "source": m["properties"]["satchunk:model_id"], "kind": "mask", "item": m["id"],
            "classes": [c["description"] for c in classes],
            "colors": ["#" + c["color_hint"].lower() for c in classes],
            "zarr": m["assets"]["mask"]["href"], "created": m["properties"].get("created"),
            "products": m["properties"].get("satchunk:products", []),
        })
    if row["label_classes"]:
        names = list(row["label_classes"])
        overlays.append({"source": "label", "kind": "label", "item": item, "classes": names,
                         "colors": palette(names), "zarr": row["zarr"],
                         "created": None, "products": [row["label_source"] or "label"]})
    return {"row": row, "stac": scene, "overlays": overlays}


def label_pixels(store: Store, collection: str, item: str) -> dict[str, int]:
    """Labelled pixels per class, from the per-chunk ``label_histogram`` (no pixels read)."""
    ds = open_scene(store, scene_key(collection, item))
    hist = ds["label_histogram"]
    totals = hist.sum(dim=("shard_y", "shard_x", "inner_y", "inner_x")).compute(
        scheduler="threads")
    return {str(n): int(v) for n, v in zip(hist.attrs["classes"], totals.values, strict=True)}


def mask_pixels(store: Store, collection: str, item: str, model_id: str,
                classes: list[str]) -> dict[str, int]:
    """Pixels per predicted class over the whole mask, counted shard by shard."""
    import dask.array as da

    ds = open_scene(store, mask_key(collection, item, model_id))
    counts = da.map_blocks(lambda b: np.bincount(b.ravel(), minlength=256)[None, None],
                           ds["class"].data, dtype=np.int64, new_axis=2,
                           chunks=((1,) * ds["class"].data.numblocks[0],
                                   (1,) * ds["class"].data.numblocks[1], (256,)))
    total = counts.sum(axis=(0, 1)).compute(scheduler="threads")
    return {n: int(total[i]) for i, n in enumerate(classes)}


def read_rgb(store: Store, collection: str, item: str, step: int) -> np.ndarray:
    """(3, h, w) float reflectance of red, green, blue (or the first band as grey) at
    every ``step``-th pixel; nodata is NaN."""
    ds = open_scene(store, scene_key(collection, item))
    refl = ds["reflectance"]
    names = [str(b) for b in refl["band"].values]
    pick = list(RGB) if all(b in names for b in RGB) else [names[0]] * 3
    sub = refl.sel(band=pick).isel(y=slice(None, None, step), x=slice(None, None, step))
    return np.asarray(sub.compute(scheduler="threads").values, dtype=np.float32)


def read_classes(store: Store, collection: str, item: str, source: str,
                 step: int) -> np.ndarray:
    """Class ids of a mask (``source`` = model id) or of the scene's ``label``."""
    if source == "label":
        var = open_scene(store, scene_key(collection, item))["label"]
    else:
        var = open_scene(store, mask_key(collection, item, source))["class"]
    sub = var.isel(y=slice(None, None, step), x=slice(None, None, step))
    return np.asarray(sub.compute(scheduler="threads").values, dtype=np.uint8)


def dataset_stats(store: Store, rows: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Per collection: labelled pixels per class, cloud covers, acquisition dates."""
    out = {}
    for c, scenes in rows.items():
        classes: dict[str, int] = defaultdict(int)
        for s in scenes:
            if s["label_classes"]:
                for name, n in label_pixels(store, c, s["id"]).items():
                    classes[name] += n
        out[c] = {"classes": dict(classes),
                  "cloud_cover": [s["cloud_cover"] for s in scenes
                                  if s["cloud_cover"] is not None],
                  "dates": [(s["datetime"], s["id"]) for s in scenes if s["datetime"]]}
    return out


def runs(store: Store) -> list[dict[str, Any]]:
    return list(reversed(list_runs(store)))


def _shape(geometry: dict[str, Any]) -> Any:
    from shapely.geometry import shape

    return shape(geometry)
