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

# A model asking for a name accepts the others, its own first (NIR: the broad S2 B08 and
# the narrow Landsat B5 / S2 B8A, which models trained on one take from the other).
ALIASES = {"nir": ("nir", "nir08"), "nir08": ("nir08", "nir")}


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


def valid_pixels(raw: Any, radiometry: Radiometry) -> Any:
    """(H, W) bool of stored DN (C, H, W): False where any band holds the nodata value
    (the rule :func:`model_inputs` applies); numpy or torch, as ``raw``."""
    import torch

    if isinstance(raw, torch.Tensor) and raw.device.type == "cpu":
        return torch.from_numpy(valid_pixels(raw.numpy(), radiometry))
    if isinstance(raw, np.ndarray):
        valid = np.ones(raw.shape[1:], bool)
    else:
        valid = torch.ones(raw.shape[1:], dtype=torch.bool, device=raw.device)
    _valid_into(valid, raw, radiometry.nodata)
    return valid


def _valid_into(valid: Any, raw: Any, nodata: float | None) -> None:
    if nodata is None:
        return
    on_np = isinstance(raw, np.ndarray)
    for band in raw:  # band by band: no (C, H, W) temporary
        if on_np and band.dtype.kind in "iu" and float(nodata).is_integer():
            info = np.iinfo(band.dtype)
            if info.min <= nodata <= info.max:  # else no DN can hold it
                valid &= band != band.dtype.type(nodata)  # no float copy
        else:
            b = band if on_np else band.float()
            valid &= (b == b) if np.isnan(nodata) else (b != np.float32(nodata))


def model_inputs(raw: Any, names: Sequence[str], spec: ModelSpec,
                 radiometry: Radiometry, out: Any = None) -> tuple[Any, Any]:
    """(normalized channels (C, ...) float32, valid (...) bool) from stored DN (C, ...):
    (C, H, W) for a region, (C, B, H, W) for a batch of patches.

    ``raw`` is a numpy array (the result is numpy) or a torch tensor on any device (the
    result is a tensor there; on a CPU the work runs in numpy on the same memory, which
    is 2-4x faster than torch's for uint16 DN). ``names`` are the common names of
    ``raw``'s bands; a pixel is nodata when any of them holds the nodata value (a band
    missing there leaves the model's input incomplete; edges of band footprints differ
    in real granules). DN become float32 before any arithmetic (uint16 and int16 are
    exact in it). ``out``: where to put the channels (a float32 (C, H, W) array or
    tensor like ``raw``, maybe a view into a larger one).
    """
    import torch

    if isinstance(raw, torch.Tensor) and raw.device.type == "cpu":
        x, valid = model_inputs(raw.numpy(), names, spec, radiometry,
                                None if out is None else out.numpy())
        return (out if out is not None else torch.from_numpy(x)), torch.from_numpy(valid)
    on_np = isinstance(raw, np.ndarray)
    shape = (spec.in_channels, *raw.shape[1:])
    if out is not None and (tuple(out.shape) != shape or out.dtype not in (np.float32,
                                                                          torch.float32)):
        raise ValueError(f"model inputs: out is {out.dtype} {tuple(out.shape)}, not float32 "
                         f"{shape}")
    if on_np:
        x = np.empty(shape, np.float32) if out is None else out
        valid = np.ones(shape[1:], bool)
    else:
        x = torch.empty(shape, dtype=torch.float32, device=raw.device) if out is None else out
        valid = torch.ones(shape[1:], dtype=torch.bool, device=raw.device)
    _valid_into(valid, raw, radiometry.nodata)
    # reflectance of the model's bands, then the indices from it, normalized in place
    # (peak memory: raw + x, no per-band copies)
    at = {n: i for i, n in enumerate(names)}
    scale, offset = np.float32(radiometry.scale), np.float32(radiometry.offset)
    if not on_np:
        scale, offset = float(scale), float(offset)
    nb = len(spec.bands)
    for c, b in enumerate(spec.bands):
        if on_np:  # DN -> float32 and the scale in one pass (the same float32 products)
            np.multiply(raw[at[b]], scale, out=x[c], dtype=np.float32)
        else:
            x[c] = raw[at[b]]
            x[c] *= scale
        if offset:
            x[c] += offset
    if spec.indices:
        refl = dict(zip(spec.bands, x[:nb], strict=True))
        for b in index_bands(spec.indices):
            if b not in refl:
                band = raw[at[b]]
                refl[b] = (band.astype(np.float32) if on_np else band.float()) * scale + offset
        for c, name in enumerate(spec.indices, start=nb):
            x[c] = spectral_index(name, refl)
    if spec.mean:
        per_channel = (-1,) + (1,) * (x.ndim - 1)  # (C, H, W) or (C, B, H, W)
        mean, std = (np.asarray(v, np.float32).reshape(per_channel)
                     for v in (spec.mean, spec.std))
        if not on_np:
            mean, std = torch.from_numpy(mean).to(x.device), torch.from_numpy(std).to(x.device)
        x -= mean
        x /= std
    if not bool(valid.all()):
        if on_np:
            for channel in x:  # channel by channel: no (C, H, W) mask
                channel[~valid] = 0.0
        else:
            x.masked_fill_(~valid, 0.0)
    floating = raw.dtype.kind == "f" if on_np else raw.is_floating_point()
    if floating or spec.indices:
        if on_np:  # scaled integer DN are finite; float DN and indices may not be
            np.nan_to_num(x, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
        else:
            torch.nan_to_num_(x, nan=0.0, posinf=0.0, neginf=0.0)
    return x, valid


# Full scales of stored DN (8, 10 and 12 bit, reflectance x 10000, 16 bit): a scene
# stored as DN x 1 is told to divide by the first its DN fit in
# DN ranges of scenes stored as is, and the scale usual for each: 8-bit bytes,
# reflectance x 10,000 (Sentinel-2, Landsat and MODIS surface reflectance), 16-bit.
_FULL_SCALES = ((255, "0.00392157 (1/255, 8-bit DN)"),
                (10000, "0.0001 (reflectance x 10,000, as Sentinel-2 or Landsat SR store it)"),
                (65535, "1.5259e-05 (1/65535, 16-bit DN)"))


def input_range(spec: ModelSpec) -> tuple[float, float] | None:
    """The reflectance range a model's normalization was made for: mean +- 3 std over its
    bands (from 0 up where no band's mean is negative); None for a model without
    normalization (an untrained preset). Derived channels (indices) do not depend on the
    scale and are left out."""
    if not spec.mean:
        return None
    n = len(spec.bands)
    mean, std = np.asarray(spec.mean[:n]), np.asarray(spec.std[:n])
    lo, hi = float((mean - 3 * std).min()), float((mean + 3 * std).max())
    return (max(lo, 0.0) if mean.min() >= 0 else lo), hi


def check_reflectance(dn: np.ndarray, radiometry: Radiometry, spec: ModelSpec,
                      item: str) -> str | None:
    """Stored DN of the model's bands (C, ...) of scene ``item``, against
    :func:`input_range`: a :class:`ModelError` where the scene's reflectance (its 99.9th
    percentile) reaches more than 10 times that range, or under a hundredth of it (dark
    scenes are normal); a one-line warning to log where it reaches more than twice the
    range; else None."""
    expected = input_range(spec)
    if expected is None:
        return None
    c = dn.shape[0]
    flat = dn.reshape(c, 1, -1)
    refl = flat[:, 0, valid_pixels(flat, radiometry)[0]].astype(np.float64)
    refl = refl * radiometry.scale + radiometry.offset
    refl = refl[np.isfinite(refl)]  # NaN in a band the others have: not a value
    if not refl.size:
        return None
    lo, hi = expected
    top = float(np.quantile(refl, 0.999))
    reach = (top - lo) / (hi - lo)
    if 0.01 <= reach <= 2:
        return None
    reaches = "reaches" if reach > 1 else "reaches only"
    said = (f"{item}: reflectance {reaches} {_num(top)} but model {spec.model_id} expects "
            f"{_num(lo)}..{_num(hi)}")
    dn_top = (top - radiometry.offset) / radiometry.scale if radiometry.scale else None
    full = next((text for f, text in _FULL_SCALES if dn_top is not None and dn_top <= f),
                None)
    if reach > 1 and hi <= 2 and full is not None:  # a reflectance model, DN stored as is
        fix = f"re-ingest with --scale {full} or the sensor's scale"
    else:
        fix = (f"re-ingest with the scale the model's training data had (it is stored with "
               f"scale_factor {radiometry.scale:g}, add_offset {radiometry.offset:g})")
    if reach > 10 or reach < 0.01:
        raise ModelError(f"{said}: {fix}")
    return f"{said}: masks may be off; if its scale is wrong, {fix}"


def _num(v: float) -> str:
    return f"{v:.2g}" if abs(v) < 100 else f"{v:.0f}"
