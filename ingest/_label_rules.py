"""The rules of the label sources: Landsat QA bits, Sentinel-2 SCL classes and
spectral-index weak labels (their readers: ``_label_qa``, ``_label_scl``,
``_label_indices``). Pure numpy: no I/O.

Every rule turns one shard's source block into a ``uint8`` class block with ids
``0 .. K-1`` and 255 for nodata.

Landsat QA (``qa`` array), classes ``clear, cloud, shadow, snow, water``. A pixel
is the first of, in this order:

1. nodata (255): the fill bit (bit 0) is set, or the value is 0 (no valid Landsat
   QA pixel is 0; 0 is what the scene holds where the QA file has no data);
2. cloud: cloud, cirrus or dilated cloud, each only at high confidence;
3. shadow: cloud shadow at high confidence;
4. snow: snow / ice at high confidence;
5. water;
6. clear: anything else.

Bit layouts (``c2``, ``c1``, ``pre``):

- ``c2``, Collection 2 ``QA_PIXEL``: bit 0 fill, 1 dilated cloud, 2 cirrus (high
  confidence), 3 cloud (high confidence), 4 cloud shadow, 5 snow, 6 clear, 7 water;
- ``c1``, Collection 1 ``BQA``: bit 0 fill, 4 cloud, bits 5-6 cloud confidence,
  7-8 cloud-shadow confidence, 9-10 snow/ice confidence, 11-12 cirrus confidence;
  it has no water flag, so ``water`` stays empty;
- ``pre``, pre-collection Landsat 8 ``BQA``: bit 0 fill, bits 4-5 water
  confidence, 10-11 snow/ice, 12-13 cirrus, 14-15 cloud; it has no cloud-shadow
  flag, so ``shadow`` stays empty.

A two-bit confidence is high when both bits are set (0b11).

Sentinel-2 L2A SCL (``scl`` array): SCL values 1..11 become class ids 0..10 with
ESA's names; 0 (no data) and anything above 11 are nodata.

Spectral indices (``reflectance``), classes ``water, vegetation, built-up, bare,
other``; the first rule that holds wins: NDWI > t_ndwi water, NDVI > t_ndvi
vegetation, NDBI > t_ndbi built-up, BSI > t_bsi bare, else other. A pixel where any
of the five bands is nodata is nodata.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping

import numpy as np

from chunkstore.errors import InputError
from models import index_bands, spectral_index

NODATA = 255

QA_CLASSES = ("clear", "cloud", "shadow", "snow", "water")
QA_LAYOUTS = ("c2", "c1", "pre")
QA_LAYOUT_NAMES = {"c2": "Collection 2 QA_PIXEL", "c1": "Collection 1 BQA",
                   "pre": "pre-collection BQA"}

SCL_CLASSES = (
    "saturated_or_defective", "dark_area_pixels", "cloud_shadows", "vegetation",
    "not_vegetated", "water", "unclassified", "cloud_medium_probability",
    "cloud_high_probability", "thin_cirrus", "snow",
)

INDEX_CLASSES = ("water", "vegetation", "built-up", "bare", "other")
INDEX_ORDER = ("ndwi", "ndvi", "ndbi", "bsi")  # rule order = class order
INDEX_BANDS = index_bands(INDEX_ORDER)  # green, nir, red, swir16, blue
# Chosen on Sentinel-2 L1C top-of-atmosphere reflectance, where haze lifts blue and
# green and lowers NDVI: NDWI > 0.1 keeps dark roofs and asphalt out of water, NDVI >
# 0.3 is the usual TOA vegetation cut, NDBI > 0.1 leaves mixed suburban pixels near 0
# out of built-up, BSI > 0 is bare soil.
DEFAULT_THRESHOLDS: dict[str, float] = {"ndwi": 0.1, "ndvi": 0.3, "ndbi": 0.1, "bsi": 0.0}


def _bit(qa: np.ndarray, i: int) -> np.ndarray:
    return ((qa >> i) & 1).astype(bool)


def _high(qa: np.ndarray, i: int) -> np.ndarray:
    """A two-bit confidence field at bits i, i+1 is high (0b11)."""
    return ((qa >> i) & 0b11) == 0b11


def qa_flags(qa: np.ndarray, layout: str) -> dict[str, np.ndarray]:
    """Boolean fill, cloud, shadow, snow and water flags of a Landsat QA block."""
    q = np.asarray(qa).astype(np.uint32)
    none = np.zeros(q.shape, dtype=bool)
    if layout == "c2":
        return {"fill": _bit(q, 0), "cloud": _bit(q, 1) | _bit(q, 2) | _bit(q, 3),
                "shadow": _bit(q, 4), "snow": _bit(q, 5), "water": _bit(q, 7)}
    if layout == "c1":
        return {"fill": _bit(q, 0), "cloud": _bit(q, 4) | _high(q, 5) | _high(q, 11),
                "shadow": _high(q, 7), "snow": _high(q, 9), "water": none}
    if layout == "pre":
        return {"fill": _bit(q, 0), "cloud": _high(q, 14) | _high(q, 12), "shadow": none,
                "snow": _high(q, 10), "water": _high(q, 4)}
    raise ValueError(f"unknown QA layout {layout!r}: use one of {', '.join(QA_LAYOUTS)}")


def qa_label(qa: np.ndarray, layout: str) -> np.ndarray:
    """Class ids of :data:`QA_CLASSES` (255 = nodata) from a Landsat QA block."""
    f = qa_flags(qa, layout)
    out = np.zeros(np.shape(qa), dtype=np.uint8)  # clear
    for name in ("water", "snow", "shadow", "cloud"):  # lowest precedence first
        out[f[name]] = QA_CLASSES.index(name)
    out[f["fill"] | (np.asarray(qa) == 0)] = NODATA
    return out


_QA_FILE = re.compile(r"(?i)(?:^|_)(BQA|QA_PIXEL)(?:\.[A-Za-z0-9]+)?$")
_C2_NAME = re.compile(r"(?i)^L[COT]0\d_L[12][A-Z]{2}_\d{6}_\d{8}_\d{8}_02_(?:T1|T2|RT)(?:_|$)")
_C1_NAME = re.compile(r"(?i)^L[COT]0\d_L1[A-Z]{2}_\d{6}_\d{8}_\d{8}_01_(?:T1|T2|RT)(?:_|$)")
_PRE_NAME = re.compile(r"(?i)^L[COT]8\d{13}[A-Z]{3}\d{2}(?:_|\.|$)")


def qa_layout_from_names(names: Iterable[str]) -> str | None:
    """The QA bit layout that the source file names of a scene imply, or None.

    ``..._QA_PIXEL`` and Collection 2 product ids (``LC08_L1TP_..._02_T1``) mean
    ``c2``; Collection 1 ids (``..._01_T1``) ``c1``; pre-collection scene ids
    (``LC80160382015196LGN00``) ``pre``. None when the names say nothing, or
    disagree.
    """
    found = set()
    for name in names:
        m = _QA_FILE.search(name)
        if m and m.group(1).upper() == "QA_PIXEL":
            found.add("c2")
        for layout, pattern in (("c2", _C2_NAME), ("c1", _C1_NAME), ("pre", _PRE_NAME)):
            if pattern.search(name):
                found.add(layout)
    return found.pop() if len(found) == 1 else None


def scl_label(scl: np.ndarray) -> np.ndarray:
    """Class ids of :data:`SCL_CLASSES` (SCL value - 1; 255 = nodata) from SCL values."""
    s = np.asarray(scl)
    out = np.full(s.shape, NODATA, dtype=np.uint8)
    ok = (s >= 1) & (s <= len(SCL_CLASSES))
    out[ok] = (s[ok] - 1).astype(np.uint8)
    return out


def index_label(bands: Mapping[str, np.ndarray], valid: np.ndarray,
                thresholds: Mapping[str, float]) -> np.ndarray:
    """Class ids of :data:`INDEX_CLASSES` (255 = nodata) from reflectance blocks keyed
    by common name (``blue, green, red, nir, swir16``) and their joint valid mask."""
    out = np.full(np.shape(valid), INDEX_CLASSES.index("other"), dtype=np.uint8)
    for k in reversed(range(len(INDEX_ORDER))):  # lowest precedence first
        name = INDEX_ORDER[k]
        out[spectral_index(name, bands) > np.float32(thresholds[name])] = k
    out[~np.asarray(valid, dtype=bool)] = NODATA
    return out


_THRESHOLDS_HELP = ("give NAME=VALUE pairs separated by commas, NAME one of ndwi, ndvi, ndbi, "
                    "bsi and VALUE a number in [-1, 1], e.g. --thresholds ndwi=0.1,ndvi=0.4")


def parse_thresholds(value: str | Mapping[str, float] | None) -> dict[str, float]:
    """The defaults with the given overrides: ``"ndwi=0.1,ndvi=0.4"`` or a mapping."""
    out = dict(DEFAULT_THRESHOLDS)
    if value is None:
        return out
    shown = value if isinstance(value, str) else ",".join(f"{k}={v}" for k, v in value.items())

    def bad(problem: str) -> InputError:
        return InputError(f"--thresholds {shown!r}: {problem}: {_THRESHOLDS_HELP}")

    if isinstance(value, str):
        pairs = []
        for part in value.split(","):
            name, sep, num = part.partition("=")
            if not sep or not name.strip() or not num.strip():
                raise bad(f"{part.strip()!r} is not NAME=VALUE")
            pairs.append((name.strip().lower(), num.strip()))
    else:
        pairs = [(str(k).strip().lower(), v) for k, v in value.items()]
    if not pairs:
        raise bad("no NAME=VALUE pair")
    seen = set()
    for name, num in pairs:
        if name not in DEFAULT_THRESHOLDS:
            raise bad(f"unknown index {name!r}")
        if name in seen:
            raise bad(f"{name} is given twice")
        seen.add(name)
        try:
            v = float(num)
        except (TypeError, ValueError):
            raise bad(f"{name}={num!r} is not a number") from None
        if isinstance(num, bool) or not math.isfinite(v) or not -1.0 <= v <= 1.0:
            raise bad(f"{name}={num} is outside [-1, 1]")
        out[name] = v
    return out
