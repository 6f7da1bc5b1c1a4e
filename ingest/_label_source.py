"""What every label source gives. Pure: no I/O.

A label source is one kind of input a scene's ``label`` is made from: a class raster
or polygons (read at ingest), or Landsat QA bits, Sentinel-2 SCL, spectral indices or
a finished prediction mask (arrays already in the store, read by ``satchunk
label``). Each kind lives in its own ``_label_<kind>.py``; its pure rules (bit
decoding, the SCL table, index thresholds) in :mod:`._label_rules`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from chunkstore import LABEL_NODATA, InputError

from ._target import ShardWindow

log = logging.getLogger("satchunk.ingest")
FEW = 0.01  # a labelled share of a scene under this is warned about
Bounds = tuple[float, float, float, float]


class LabelSource(Protocol):
    """A picklable description of a label's input; workers call :meth:`read`."""

    @property
    def classes(self) -> tuple[str, ...]:
        """The class names; class id ``k`` is ``classes[k]``."""
        ...

    @property
    def source(self) -> Mapping[str, Any]:
        """What the label is made from: ``from`` (``qa:c2``, ``scl``, ``indices``,
        ``mask:<model-id>``, ``raster``, ``polygons``) and what else identifies it."""
        ...

    def read(self, store: Any, window: ShardWindow) -> np.ndarray:
        """The uint8 label (class ids, 255 = unlabelled) of one shard window of the
        scene grid; ``store`` (a ``chunkstore.Store``, with credentials; not imported
        here, which keeps this module pure) holds the scene."""
        ...


@dataclass(frozen=True)
class Footprint:
    """Where one scene of an ingest lies: labels are checked against it."""

    item: str  # scene item id, for messages
    crs_wkt: str  # the scene's CRS
    bounds: Bounds  # left, bottom, right, top in that CRS


def window_bounds(window: ShardWindow) -> Bounds:
    """``window``'s left, bottom, right, top in its CRS."""
    a, _, c, _, e, f = window.transform
    xs, ys = (c, c + a * window.width), (f, f + e * window.height)
    return min(xs), min(ys), max(xs), max(ys)


def in_crs(bounds: Bounds, src_wkt: str, dst_wkt: str) -> Bounds | None:
    """``bounds`` (in ``src_wkt``) as a box in ``dst_wkt``; None where it does not map."""
    from pyproj import CRS, Transformer

    src, dst = CRS.from_user_input(src_wkt), CRS.from_user_input(dst_wkt)
    if src.equals(dst):
        return bounds
    try:
        out = Transformer.from_crs(src, dst, always_xy=True).transform_bounds(
            *bounds, densify_pts=21)
    except Exception:  # pyproj raises ProjError and others outside a CRS's area of use
        return None
    return out if all(math.isfinite(v) for v in out) else None


def _extent_words(crs_wkt: str) -> tuple[str, int]:
    """How to name ``crs_wkt``'s unit and CRS, and how many decimals its coordinates need."""
    from pyproj import CRS

    crs = CRS.from_user_input(crs_wkt)
    crs = crs.source_crs if crs.is_bound and crs.source_crs else crs  # drop TOWGS84
    auth = crs.to_authority(min_confidence=20)
    name = ":".join(auth) if auth else crs.name
    if not auth and name.lower() in ("unnamed", "unknown", ""):
        method = crs.coordinate_operation.method_name if crs.coordinate_operation else ""
        name = f"an unnamed {method} CRS".replace("  ", " ")
    unit = crs.axis_info[0].unit_name if crs.axis_info else "unknown unit"
    unit = {"metre": "metres", "degree": "degrees"}.get(unit, unit)
    return f"{unit} of {name}", 5 if crs.is_geographic else 0


def check_cover(path: str, scene: Footprint, labelled: float, label_bounds: Bounds | None,
                label_crs_wkt: str, what: str) -> None:
    """Refuse labels with no ``what`` on ``scene`` (``labelled``: the share of the scene
    they cover, 0..1); warn when they cover under 1 % of it."""
    if labelled >= FEW:
        return
    if labelled > 0:
        log.warning("%s: labels cover only %.2g %% of scene %s: check that they belong to it",
                    path, 100 * labelled, scene.item)
        return
    crs, mine = scene.crs_wkt, scene.bounds
    theirs = None if label_bounds is None else in_crs(label_bounds, label_crs_wkt, crs)
    if theirs is None and label_bounds is not None:  # not mappable: both in lon/lat
        crs = "EPSG:4326"
        theirs = in_crs(label_bounds, label_crs_wkt, crs)
        mine = in_crs(scene.bounds, scene.crs_wkt, crs) or mine
    unit, digits = _extent_words(crs)

    def show(b: Bounds | None) -> str:
        return "(unknown)" if b is None else "(" + ", ".join(f"{v:.{digits}f}" for v in b) + ")"

    meet = theirs is not None and (theirs[0] < mine[2] and mine[0] < theirs[2]
                                   and theirs[1] < mine[3] and mine[1] < theirs[3])
    fix = ("they overlap it but hold no class there (only nodata, or all beside it): label "
           "the scene's area" if meet else "give labels that cover the scene")
    raise InputError(
        f"{path}: no labelled {what} falls on scene {scene.item}: the labels span "
        f"{show(theirs)} and the scene {show(mine)} (left, bottom, right, top in {unit}): "
        f"{fix}, or ingest it without --labels")


def class_names(path: str, codes: Sequence[int], classes: Sequence[str] | None
                ) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """The names and the file's code of each class id of a class raster whose present
    codes (ascending) are ``codes``: ``classes`` names those codes in order or, when it
    has more names than the largest code, every code from 0 by value."""
    if len(codes) > LABEL_NODATA:
        raise InputError(f"{path}: {len(codes)} class values on the scenes: at most "
                         f"{LABEL_NODATA} fit uint8; give a class raster, or mark the "
                         "unlabelled value with --nodata-class")
    if not classes:
        return tuple(f"class_{v}" for v in codes), tuple(codes)
    if len(classes) == len(codes):
        return tuple(classes), tuple(codes)
    if codes and codes[0] >= 0 and codes[-1] < len(classes) <= LABEL_NODATA:
        return tuple(classes), tuple(range(len(classes)))
    shown = ", ".join(map(str, codes[:20])) + (", ..." if len(codes) > 20 else "")
    raise InputError(f"{path}: the scenes hold {len(codes)} class values ({shown}) but "
                     f"--classes names {len(classes)}: name each of those values in "
                     "ascending order")
