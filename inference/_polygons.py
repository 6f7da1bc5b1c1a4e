"""Polygons of a class map, shard by shard, merged across shard borders. Pure: no I/O.

Each shard is labelled into 4-connected same-class components and each component
gets a global id. Where two shards touch, equal-class pixels facing each other
across the border join their components (union-find), so a polygon cut by a shard
border comes out whole. Geometry stays in global pixel coordinates until the end:
pieces of neighbouring shards share exact integer vertices and union without slivers.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

_EDGES = ("top", "bottom", "left", "right")


@dataclass
class Pieces:
    """The components of one shard window, with its border pixels' ids and classes."""

    window: tuple[int, int, int, int]  # row_off, col_off, height, width
    ids: np.ndarray  # int64 global ids
    classes: np.ndarray  # uint8
    pixels: np.ndarray  # int64
    prob_sum: np.ndarray  # float64 sum of the own-class probability (NaN: none stored)
    geoms: list  # shapely polygons in global pixel coordinates (col, row)
    edges: dict[str, np.ndarray]  # global id of each border pixel, 0 = nodata


def shard_pieces(cls: np.ndarray, prob: np.ndarray | None, window: tuple[int, int, int, int],
                 id_base: int, nodata: int = 255) -> Pieces:
    """Label one shard of a class map. ``prob`` is (classes, h, w) in [0, 1] or None;
    ids are ``id_base + 1 ...`` (give each shard a disjoint range)."""
    import shapely
    from rasterio import features
    from rasterio.transform import Affine
    from scipy import ndimage

    r0, c0, h, w = window
    if cls.shape != (h, w):
        raise ValueError(f"class block {cls.shape} does not match window {h} x {w}")
    labels = np.zeros((h, w), dtype=np.int32)
    classes: list[int] = []
    for k in np.unique(cls):
        if k == nodata:
            continue
        lab, n = ndimage.label(cls == k)  # 4-connectivity, as polygonize below
        labels[lab > 0] = lab[lab > 0] + len(classes)
        classes.extend([int(k)] * n)
    n = len(classes)
    flat = labels.ravel()
    pixels = np.bincount(flat, minlength=n + 1)[1:].astype(np.int64)
    if prob is None:
        prob_sum = np.full(n, np.nan)
    else:
        own = np.take_along_axis(prob, np.where(cls == nodata, 0, cls)[None].astype(np.intp),
                                 axis=0)[0]
        prob_sum = np.bincount(flat, weights=own.ravel().astype(np.float64), minlength=n + 1)[1:]
    parts: list[list] = [[] for _ in range(n)]
    for geom, value in features.shapes(labels, mask=labels > 0, connectivity=4,
                                       transform=Affine.translation(c0, r0)):
        parts[int(value) - 1].append(shapely.geometry.shape(geom))
    geoms = [p[0] if len(p) == 1 else shapely.union_all(p) for p in parts]
    glob = np.where(labels > 0, labels.astype(np.int64) + id_base, 0)
    edges = {"top": glob[0], "bottom": glob[-1], "left": glob[:, 0], "right": glob[:, -1]}
    return Pieces(window, np.arange(1, n + 1, dtype=np.int64) + id_base,
                  np.array(classes, dtype=np.uint8), pixels, prob_sum, geoms,
                  {k: edges[k].copy() for k in _EDGES})


@dataclass
class Polygon:
    cls: int
    pixels: int
    prob_sum: float
    geometry: object  # shapely geometry in global pixel coordinates

    @property
    def mean_probability(self) -> float:
        return self.prob_sum / self.pixels


def merge_pieces(shards: Sequence[Pieces]) -> list[Polygon]:
    """Join components that continue across shard borders; one polygon per component
    (vertices left in a straight line by the join are dropped)."""
    import shapely

    cls_of = {int(i): int(c) for p in shards for i, c in zip(p.ids, p.classes, strict=True)}
    parent: dict[int, int] = {}

    def find(a: int) -> int:
        root = a
        while parent.get(root, root) != root:
            root = parent[root]
        while parent.get(a, a) != root:  # path compression
            parent[a], a = root, parent[a]
        return root

    for a, b in _border_pairs(shards):
        if cls_of[a] == cls_of[b]:
            ra, rb = find(a), find(b)
            if ra != rb:
                parent[max(ra, rb)] = min(ra, rb)
    groups: dict[int, list[tuple[Pieces, int]]] = {}
    for p in shards:
        for k, gid in enumerate(p.ids):
            groups.setdefault(find(int(gid)), []).append((p, k))
    out = []
    for members in groups.values():
        p0, k0 = members[0]
        geoms = [p.geoms[k] for p, k in members]
        out.append(Polygon(int(p0.classes[k0]), int(sum(p.pixels[k] for p, k in members)),
                           float(sum(p.prob_sum[k] for p, k in members)),
                           geoms[0] if len(geoms) == 1
                           else shapely.simplify(shapely.union_all(geoms), 0)))
    return out


def _border_pairs(shards: Sequence[Pieces]) -> Iterable[tuple[int, int]]:
    """(id, id) of facing border pixels of touching shards, both valid."""
    at = {p.window[:2]: p for p in shards}
    for p in shards:
        r0, c0, h, w = p.window
        for q, mine, theirs in ((at.get((r0 + h, c0)), "bottom", "top"),
                                (at.get((r0, c0 + w)), "right", "left")):
            if q is None:
                continue
            a, b = p.edges[mine], q.edges[theirs]
            if a.shape != b.shape:
                raise ValueError(f"shards at {p.window[:2]} and {q.window[:2]} do not line up")
            keep = (a > 0) & (b > 0)
            yield from np.unique(np.stack([a[keep], b[keep]], axis=1), axis=0).tolist()
