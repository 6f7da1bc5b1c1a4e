"""Model inputs from stored scene bands: band matching, radiometry, normalization. Pure.

Shared by inference (whole shards) and training (patches), so a model sees the
same inputs in both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._errors import ModelError
from ._indices import index_bands, spectral_index
from ._spec import ModelSpec

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
        raise ModelError(
            f"scene {item} lacks band(s) {', '.join(missing)} that model {spec.model_id} needs "
            f"(scene has {', '.join(have)}): ingest them or pick a model for these bands")
    return tuple(idx), tuple(names)


@dataclass(frozen=True)
class Radiometry:
    """How stored DN become reflectance, and which value means no data."""

    scale: float
    offset: float
    nodata: float | None


def model_inputs(raw: Any, names: Sequence[str], spec: ModelSpec,
                 radiometry: Radiometry) -> tuple[Any, Any]:
    """(normalized channels (C, H, W) float32, valid (H, W) bool) from stored DN.

    ``raw`` is a torch tensor (on any device: the result stays there) or a numpy array
    (the result is numpy). ``names`` are the common names of ``raw``'s bands; a pixel
    is nodata when any of them holds the nodata value (a band missing there leaves the
    model's input incomplete; edges of band footprints differ in real granules). DN
    become float32 before any arithmetic (uint16 and int16 are exact in it).
    """
    import torch

    if isinstance(raw, np.ndarray):
        x, valid = model_inputs(torch.from_numpy(np.ascontiguousarray(raw)), names, spec,
                                radiometry)
        return x.numpy(), valid.numpy()
    dev = raw.device
    f32 = torch.float32
    valid = torch.ones(raw.shape[1:], dtype=torch.bool, device=dev)
    nodata = radiometry.nodata
    if nodata is not None:  # band by band: no (C, H, W) temporary
        for band in raw:
            b = band.to(f32)
            valid &= ~torch.isnan(b) if np.isnan(nodata) else b != np.float32(nodata)
    # one float32 tensor for every channel: reflectance of the model's bands, then the
    # indices from it, normalized in place (peak memory: raw + x, no per-band copies)
    at = {n: i for i, n in enumerate(names)}
    scale, offset = float(np.float32(radiometry.scale)), float(np.float32(radiometry.offset))
    nb = len(spec.bands)
    x = torch.empty((nb + len(spec.indices), *raw.shape[1:]), dtype=f32, device=dev)
    for c, b in enumerate(spec.bands):
        x[c] = raw[at[b]]
        x[c] *= scale
        x[c] += offset
    if spec.indices:
        refl = dict(zip(spec.bands, x[:nb], strict=True))
        for b in index_bands(spec.indices):
            if b not in refl:
                refl[b] = raw[at[b]].to(f32) * scale + offset
        for c, name in enumerate(spec.indices, start=nb):
            x[c] = spectral_index(name, refl)
    if spec.mean:
        x -= torch.tensor(spec.mean, dtype=f32, device=dev)[:, None, None]
        x /= torch.tensor(spec.std, dtype=f32, device=dev)[:, None, None]
    x.masked_fill_(~valid, 0.0)
    torch.nan_to_num_(x, nan=0.0, posinf=0.0, neginf=0.0)
    return x, valid
