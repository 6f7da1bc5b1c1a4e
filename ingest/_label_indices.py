"""Label source: spectral-index weak labels from a scene's own reflectance."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from chunkstore import InputError, Store
from models import ALIASES

from ._label_rules import INDEX_BANDS, INDEX_CLASSES, index_label
from ._label_store import read_window
from ._target import ShardWindow


@dataclass(frozen=True)
class IndexLabel:
    array: str  # key of the scene's ``reflectance`` array
    bands: tuple[tuple[str, str, int], ...]  # index band, the scene's band, its position
    scale: float  # stored DN -> reflectance
    offset: float
    fill: float | None
    thresholds: tuple[tuple[str, float], ...]

    @property
    def classes(self) -> tuple[str, ...]:
        return INDEX_CLASSES

    @property
    def source(self) -> Mapping[str, Any]:
        return {"from": "indices", "thresholds": dict(self.thresholds),
                "bands": {name: band for name, band, _ in self.bands}}

    def read(self, store: Store, window: ShardWindow) -> np.ndarray:
        block = read_window(store, self.array, window)
        valid = np.ones(window.shape, dtype=bool)
        refl = {}
        for name, _, i in self.bands:
            v = block[i]
            if v.dtype.kind == "f":
                valid &= ~np.isnan(v)
            if self.fill is not None and not np.isnan(self.fill):
                valid &= v != self.fill
            refl[name] = v.astype(np.float32) * np.float32(self.scale) + np.float32(self.offset)
        del block
        return index_label(refl, valid, dict(self.thresholds))


def index_source(array: str, names: Sequence[str], scale: float, offset: float,
                 fill: float | None, thresholds: Mapping[str, float], scene: str) -> IndexLabel:
    """The index label of ``scene`` (``collection/item``), whose reflectance holds bands
    ``names``; the model's band aliases stand in (``nir08`` for ``nir``)."""
    chosen: dict[str, str] = {}
    for b in INDEX_BANDS:
        hit = next((a for a in ALIASES.get(b, (b,)) if a in names), None)
        if hit is not None:
            chosen[b] = hit
    missing = [b for b in INDEX_BANDS if b not in chosen]
    if missing:
        raise InputError(
            f"scene {scene} lacks band(s) {', '.join(missing)} that --from indices "
            f"needs (it has {', '.join(names)}): re-ingest it with blue, green, red, nir "
            "(or nir08) and swir16")
    return IndexLabel(array, tuple((b, chosen[b], list(names).index(chosen[b]))
                                   for b in INDEX_BANDS), scale, offset, fill,
                      tuple(thresholds.items()))
