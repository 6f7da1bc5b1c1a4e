"""``ModelSpec``: what a segmentation model eats and gives. Pure: no I/O, no torch."""

from __future__ import annotations

import json
import math
import re
import reprlib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from ._errors import ModelError

INDICES = ("ndvi", "ndwi", "ndbi", "bsi")
_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
_COLOR = re.compile(r"^#?[0-9A-Fa-f]{6}$")  # #rrggbb, as STAC's color_hint and COGs take
_SHOW = reprlib.Repr()
_SHOW.maxstring, _SHOW.maxother, _SHOW.maxlist, _SHOW.maxdict, _SHOW.maxlevel = 40, 40, 4, 4, 2
_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
            "#7f7f7f", "#bcbd22", "#17becf")


@dataclass(frozen=True)
class ModelSpec:
    """A model's contract with the data.

    ``bands`` are matched by common name against the scene; ``indices`` are
    derived channels appended after the bands; ``mean``/``std`` normalize every
    input channel (in reflectance units). Tiles of ``tile`` pixels step by
    ``tile - 2 * halo``, so neighbouring tiles share ``2 * halo`` pixels and are
    blended there with a smooth window. Tiles start at scene pixels
    ``k * stride + tile_offset``, the same grid for every block and for the
    whole image.
    """

    name: str
    version: str
    bands: tuple[str, ...]
    classes: tuple[str, ...]
    colors: tuple[str, ...] = ()
    tile: int = 256
    halo: int = 32
    tile_offset: int = 0
    indices: tuple[str, ...] = ()
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    architecture: Mapping[str, Any] = field(default_factory=dict, hash=False, compare=False)

    def __post_init__(self) -> None:
        for label, value in (("model name", self.name), ("model version", self.version)):
            if not isinstance(value, str) or not _ID.match(value) or ".." in value:
                raise ModelError(f"{label} {show(value)} may only use letters, digits, '.', '_', "
                                 "'-' (at most 128)")
        if not self.bands:
            raise ModelError(f"model {self.name}: no input bands")
        if len(self.classes) < 2:
            raise ModelError(f"model {self.name}: needs at least 2 classes, got {self.classes}")
        if len(self.classes) > 255:
            raise ModelError(f"model {self.name}: at most 255 classes (class 255 is nodata)")
        bad = [i for i in self.indices if i not in INDICES]
        if bad:
            raise ModelError(f"model {self.name}: unknown derived channels {bad}; "
                             f"known: {', '.join(INDICES)}")
        if self.tile < 8 or not 0 <= 4 * self.halo <= self.tile:
            raise ModelError(f"model {self.name}: tile {self.tile} and halo {self.halo} need "
                             "tile >= 8 and 0 <= halo <= tile / 4")
        if not 0 <= self.tile_offset < self.stride:
            raise ModelError(f"model {self.name}: tile_offset {self.tile_offset} must be in "
                             f"[0, stride {self.stride})")
        n = self.in_channels
        for label, values in (("mean", self.mean), ("std", self.std)):
            if values and len(values) != n:
                raise ModelError(f"model {self.name}: {label} has {len(values)} values for "
                                 f"{n} input channels")
        if any(s <= 0 for s in self.std):
            raise ModelError(f"model {self.name}: std values must be > 0")
        if not self.colors:
            object.__setattr__(self, "colors", tuple(_PALETTE[i % len(_PALETTE)]
                                                     for i in range(len(self.classes))))
        elif len(self.colors) != len(self.classes):
            raise ModelError(f"model {self.name}: {len(self.colors)} colours for "
                             f"{len(self.classes)} classes")
        bad = [c for c in self.colors if not isinstance(c, str) or not _COLOR.match(c)]
        if bad:
            raise ModelError(f"model {self.name}: colour {show(bad[0])} is not a colour: "
                             "write '#rrggbb' (six hex digits), one per class")

    @property
    def in_channels(self) -> int:
        return len(self.bands) + len(self.indices)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def stride(self) -> int:
        return self.tile - 2 * self.halo

    @property
    def model_id(self) -> str:
        return f"{self.name}-{self.version}"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["architecture"] = dict(self.architecture)
        return json.loads(json.dumps(d))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ModelSpec:
        """A spec from its JSON form, each field's type checked (a one-line
        :class:`ModelError` naming the field otherwise)."""
        if not isinstance(d, Mapping):
            raise ModelError(f"model config is a JSON {json_type(d)}, not an object of "
                             "name, version, bands, classes, ...")
        known = set(cls.__dataclass_fields__)
        extra = sorted(str(k) for k in set(d) - known)
        if extra:
            raise ModelError(f"model config has unknown fields {show(extra)}: use "
                             f"{', '.join(sorted(known - {'architecture'}))}")
        missing = [k for k in ("name", "version", "bands", "classes") if k not in d]
        if missing:
            raise ModelError(f"model config lacks {missing}")
        kw: dict[str, Any] = {k: _list_of(k, v, _LISTS[k]) if k in _LISTS
                              else _one(k, v, _SCALARS[k]) for k, v in d.items()}
        kw["architecture"] = kw.get("architecture") or {}
        return cls(**kw)


# each field's JSON type: one value, or a list of values
_SCALARS: dict[str, type] = {"name": str, "version": str, "tile": int, "halo": int,
                             "tile_offset": int, "architecture": dict}
_LISTS: dict[str, type] = {"bands": str, "classes": str, "colors": str, "indices": str,
                           "mean": float, "std": float}
_WANT = {str: "a string", int: "an integer", dict: "an object", float: "a finite number"}
_EXAMPLE = {str: '"name"', float: "0.1"}


def _one(key: str, value: Any, kind: type) -> Any:
    if kind is dict and isinstance(value, Mapping | None):
        return dict(value or {})
    if kind is int and _finite(value) and not isinstance(value, float):
        return value
    if kind is str and isinstance(value, str):
        return value
    raise ModelError(f"field {key!r}: {show(value)} is not {_WANT[kind]}")


def _list_of(key: str, value: Any, kind: type) -> tuple[Any, ...]:
    if not isinstance(value, list | tuple):
        raise ModelError(f"field {key!r}: {show(value)} is not a list of {_WANT[kind][2:]}s "
                         f"(write [{_EXAMPLE[kind]}, ...])")
    for x in value:
        if not (isinstance(x, str) if kind is str else _finite(x)):
            raise ModelError(f"field {key!r}: {show(x)} in it is not {_WANT[kind]}")
    return tuple(float(x) for x in value) if kind is float else tuple(value)


def show(value: Any) -> str:
    """``value`` for a one-line message: at most about 60 characters."""
    try:
        text = _SHOW.repr(value)
    except ValueError:  # an int of more digits than Python will print
        text = f"a long {type(value).__name__}"
    text = "".join(c if c.isprintable() else "?" for c in text)
    return text if len(text) <= 60 else text[:57] + "..."


def _finite(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int beyond any float
        return False


def json_type(value: Any) -> str:
    """The JSON name of a loaded value's type, for messages."""
    return {list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number")
