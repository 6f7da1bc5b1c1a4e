"""Labelled scenes of one or more collections, as the trainer needs them.

Only scenes whose STAC item lists ``satchunk:label_classes`` count as labelled:
the item is written after every label shard, so a half-labelled scene is never
used. The per-chunk label histograms are read here (small); pixels are not.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from chunkstore import (
    InputError,
    NotFoundError,
    Store,
    list_collections,
    list_items,
    read_scene,
    scene_key,
)
from models import Radiometry


@dataclass(frozen=True)
class SceneRef:
    collection: str
    item: str
    key: str
    bands: tuple[str, ...]
    shape: tuple[int, int]
    shard: int
    chunk: int
    radiometry: Radiometry
    classes: tuple[str, ...]
    dtype: str = "uint16"  # stored reflectance dtype
    grid_id: str = ""  # equal for scenes on the same CRS, transform and shard size


def labelled_scenes(store: Store, collections: Sequence[str]) -> list[SceneRef]:
    """Every labelled scene of ``collections``; refuses a collection without one and
    scenes that disagree on the class list."""
    known = set(list_collections(store))
    out: list[SceneRef] = []
    for c in collections:
        if c not in known:
            raise NotFoundError(f"collection {c!r} is not in {store.describe()}: "
                                "see `satchunk catalog ls`")
        items = [i for i in list_items(store, c)
                 if i["properties"].get("satchunk:kind") != "mask"]
        labelled = [i for i in items if i["properties"].get("satchunk:label_classes")]
        if not labelled:
            raise InputError(f"collection {c!r} has no labelled scene: ingest with --labels or "
                             f"run `satchunk label ITEM --from ...` on its {len(items)} scene(s)")
        for it in labelled:
            info = read_scene(store, scene_key(c, it["id"]))
            shard = info.grid.shard
            grid_id = hashlib.sha1(json.dumps([info.crs_wkt, list(info.transform), shard]
                                              ).encode()).hexdigest()[:12]
            out.append(SceneRef(
                collection=c, item=it["id"], key=info.key, bands=info.bands,
                shape=info.shape[1:], shard=shard, chunk=info.grid.chunk,
                radiometry=Radiometry(info.scale, info.offset, info.fill),
                classes=tuple(it["properties"]["satchunk:label_classes"]), dtype=info.dtype,
                grid_id=grid_id))
    first = out[0]
    for s in out[1:]:
        if s.classes != first.classes:
            raise InputError(f"scenes disagree on label classes: {first.collection}/{first.item} "
                             f"has {list(first.classes)}, {s.collection}/{s.item} has "
                             f"{list(s.classes)}; relabel them with the same source")
    return out


def read_histogram(store: Store, scene: SceneRef) -> np.ndarray:
    """``label_histogram`` (shard_y, shard_x, inner_y, inner_x, class) of a scene."""
    import zarr

    group = zarr.open_group(store.zarr_store(scene.key, read_only=True), mode="r",
                            zarr_format=3)
    return np.asarray(group["label_histogram"][:])
