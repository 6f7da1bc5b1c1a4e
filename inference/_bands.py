"""Match a model's input bands to a scene's bands by common name. Pure."""

from __future__ import annotations

from collections.abc import Sequence

from chunkstore import InputError
from models import ModelSpec, index_bands

# A model asking for the first name accepts the others (broad NIR: S2 B08, Landsat B5).
ALIASES = {"nir": ("nir", "nir08")}


def match_bands(spec: ModelSpec, scene_bands: Sequence[str], item: str
                ) -> tuple[tuple[int, ...], tuple[str, ...]]:
    """(indices into the scene's band axis, the model's name for each) of every band
    the model reads, including those its derived channels need."""
    need = list(spec.bands) + [b for b in index_bands(spec.indices) if b not in spec.bands]
    have = list(scene_bands)
    idx, names, missing = [], [], []
    for name in need:
        hit = next((have.index(a) for a in ALIASES.get(name, (name,)) if a in have), None)
        if hit is None:
            missing.append(name)
        else:
            idx.append(hit)
            names.append(name)
    if missing:
        raise InputError(
            f"scene {item} lacks band(s) {', '.join(missing)} that model {spec.model_id} needs "
            f"(scene has {', '.join(have)}): ingest them or pick a model for these bands")
    return tuple(idx), tuple(names)
