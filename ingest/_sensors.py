"""Sensor band tables and file-name recognition. Pure: no I/O.

Common names follow the STAC ``eo`` extension. Scale and offset turn stored DN
into top-of-atmosphere (L1) or surface (L2) reflectance.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from models import ALIASES as MODEL_ALIASES  # names a model accepts for one another

SENTINEL2 = "sentinel-2"
LANDSAT = "landsat"
GENERIC = "generic"
SENSORS = ("auto", SENTINEL2, LANDSAT, GENERIC)
# STAC eo common names (plus Sentinel-2's red-edge triple) and SAR polarisations: the
# names models and spectral indices look bands up by.
COMMON_NAMES = ("coastal", "blue", "green", "yellow", "red", "rededge", "rededge071",
                "rededge075", "rededge078", "nir", "nir08", "nir09", "cirrus", "swir16",
                "swir22", "pan", "lwir", "lwir11", "lwir12", "vv", "vh", "hh", "hv")
ALIASES = {"r": "red", "g": "green", "b": "blue", "n": "nir", "nir1": "nir", "swir1": "swir16",
           "swir2": "swir22", "re1": "rededge071", "re2": "rededge075", "re3": "rededge078",
           "thermal": "lwir"}


@dataclass(frozen=True)
class BandInfo:
    name: str  # the sensor's band id, e.g. B02
    common_name: str
    center_wavelength: float | None = None  # micrometres


S2_BANDS = {b.name: b for b in [
    BandInfo("B01", "coastal", 0.443), BandInfo("B02", "blue", 0.49),
    BandInfo("B03", "green", 0.56), BandInfo("B04", "red", 0.665),
    BandInfo("B05", "rededge071", 0.704), BandInfo("B06", "rededge075", 0.74),
    BandInfo("B07", "rededge078", 0.783), BandInfo("B08", "nir", 0.842),
    BandInfo("B8A", "nir08", 0.865), BandInfo("B09", "nir09", 0.945),
    BandInfo("B10", "cirrus", 1.375), BandInfo("B11", "swir16", 1.61),
    BandInfo("B12", "swir22", 2.19),
]}

LANDSAT_BANDS = {b.name: b for b in [
    BandInfo("B1", "coastal", 0.44), BandInfo("B2", "blue", 0.48), BandInfo("B3", "green", 0.56),
    BandInfo("B4", "red", 0.655), BandInfo("B5", "nir08", 0.865),
    BandInfo("B6", "swir16", 1.61), BandInfo("B7", "swir22", 2.2), BandInfo("B8", "pan", 0.59),
    BandInfo("B9", "cirrus", 1.37), BandInfo("B10", "lwir11", 10.9),
    BandInfo("B11", "lwir12", 12.0),
]}
# Not reflectance, or at another resolution: only on request (--bands).
LANDSAT_THERMAL = {"B10", "B11"}
LANDSAT_OPTIONAL = {"B8"}

_S2_BAND = re.compile(r"(?i)(?:^|_)(B(?:0[1-9]|1[0-2]|8A))(?:_(?:10|20|60)m)?$")
_S2_ONLY = {"01", "02", "03", "04", "05", "06", "07", "08", "09", "8A", "12"}
_S2_SCL = re.compile(r"(?i)(?:^|_)SCL(?:_20m)?$")
_LS_BAND = re.compile(r"(?i)(?:^|_)(SR_|ST_)?(B(?:1[01]|[1-9]))$")
_LS_QA = re.compile(r"(?i)(?:^|_)(BQA|QA_PIXEL)$")
_S2_DATE = re.compile(r"(?:^|_)(\d{8}T\d{6})(?:_|$)")
_LS_DATE = re.compile(r"(?:^|_)(\d{8})_\d{8}_")
# Landsat 1-7 pre-collection scene ids: L + sensor + mission + path + row + year + day
# of year + station + version (LE70350322008118EDC00: 2008, day 118).
_LS_SCENE_ID = re.compile(
    r"(?i)(?:^|[^A-Z0-9])L[CEMOT][1-9]\d{6}((?:19|20)\d{2})(\d{3})[A-Z]{3}\d{2}")
# A calendar date in a file name: 20160517, 2016-05-17 or 2016_05_17 (not inside a
# longer run of digits), optionally with a THHMMSS time.
_NAME_DATE = re.compile(r"(?<!\d)((?:19|20)\d{2})([-_]?)(0[1-9]|1[0-2])\2(0[1-9]|[12]\d|3[01])"
                        r"(?:T(\d{2})(\d{2})(\d{2}))?(?!\d)")
_S2_OFFSET_SINCE = datetime(2022, 1, 25, tzinfo=UTC)  # processing baseline 04.00
# Landsat 1-7 product names: Collection 1/2 (LE07_L2SP_...) and pre-collection scene ids
# (LE72250782011065CUB00). Their band numbering is not Landsat 8/9's.
_LS_LEGACY = re.compile(r"(?i)(?:^|_)L([MTE])(?:0([1-7])(?:_|$)|([1-7])\d{13})")
_LS_INSTRUMENT = {"M": "MSS", "T": "TM", "E": "ETM+"}


@dataclass(frozen=True)
class BandFile:
    """What a file name says: which sensor, which band or auxiliary layer."""

    sensor: str
    band: str | None  # band id, None for an auxiliary layer
    aux: str | None  # 'qa' (Landsat QA) or 'scl' (Sentinel-2 scene classification)
    product: str  # the file stem before the band token
    level2: bool = False


def recognise(stem: str, suffix: str, hint: str | None = None) -> BandFile | None:
    """Recognise a Sentinel-2 or Landsat band file from its stem and suffix.

    ``B10``/``B11`` GeoTIFFs exist for both sensors; ``hint`` settles them.
    """
    suffix = suffix.lower()
    if suffix in (".jp2", ".tif", ".tiff", ".vrt"):
        m = _S2_BAND.search(stem)
        if m and (suffix == ".jp2" or hint == SENTINEL2 or m.group(1)[1:] in _S2_ONLY):
            return BandFile(SENTINEL2, m.group(1).upper(), None, stem[: m.start()])
        m = _S2_SCL.search(stem)
        if m:
            return BandFile(SENTINEL2, None, "scl", stem[: m.start()], level2=True)
    if suffix in (".tif", ".tiff", ".vrt"):
        m = _LS_BAND.search(stem)
        if m:
            return BandFile(LANDSAT, m.group(2).upper(), None, stem[: m.start()],
                            level2=bool(m.group(1)))
        m = _LS_QA.search(stem)
        if m:
            return BandFile(LANDSAT, None, "qa", stem[: m.start()])
    return None


def landsat_legacy(stem: str) -> str | None:
    """'Landsat 7 (ETM+)' when ``stem`` names a Landsat 1-7 product, else None.

    Those missions number their bands differently from Landsat 8/9 (on Landsat 4, 5
    and 7 B1 is blue and B4 is NIR), so the Landsat 8/9 band table does not apply.
    """
    m = _LS_LEGACY.search(stem)
    if m is None:
        return None
    return f"Landsat {m.group(2) or m.group(3)} ({_LS_INSTRUMENT[m.group(1).upper()]})"


def acquisition_time(text: str, sensor: str) -> datetime | None:
    """Acquisition time from a product name, if it carries one."""
    if sensor == SENTINEL2:
        m = _S2_DATE.search(text)
        if m:
            return datetime.strptime(m.group(1), "%Y%m%dT%H%M%S").replace(tzinfo=UTC)
    if sensor == LANDSAT:
        m = _LS_DATE.search(text)
        if m:
            return datetime.strptime(m.group(1), "%Y%m%d").replace(tzinfo=UTC)
    return None


def is_product_id(text: str, sensor: str) -> bool:
    """Whether ``text`` holds a Sentinel-2 or Landsat product (or Landsat scene) id."""
    return acquisition_time(text, sensor) is not None or (
        sensor == LANDSAT and _LS_SCENE_ID.search(text) is not None)


def name_time(text: str) -> datetime | None:
    """The acquisition time a file or folder name carries, if exactly one: a Sentinel-2
    or Landsat product time, a Landsat 1-7 scene id's year and day, or one calendar date
    (``..._20160517``, ``2016-05-17``). Two different dates (e.g. a Landsat product's
    acquisition and processing dates outside the usual layout) give None."""
    for sensor in (SENTINEL2, LANDSAT):
        t = acquisition_time(text, sensor)
        if t is not None:
            return t
    m = _LS_SCENE_ID.search(text)
    if m and 1 <= int(m.group(2)) <= 366:
        return datetime.strptime(m.group(1) + m.group(2), "%Y%j").replace(tzinfo=UTC)
    found = set()
    for m in _NAME_DATE.finditer(text):
        y, _, mo, d, hh, mm, ss = m.groups()
        try:
            found.add(datetime(int(y), int(mo), int(d), int(hh or 0), int(mm or 0),
                               int(ss or 0), tzinfo=UTC))
        except ValueError:  # 2016-02-30
            continue
    return found.pop() if len(found) == 1 else None


_CODES = {"%Y": r"\d{4}", "%y": r"\d{2}", "%m": r"\d{2}", "%d": r"\d{2}", "%j": r"\d{3}",
          "%H": r"\d{2}", "%M": r"\d{2}", "%S": r"\d{2}", "%b": r"[A-Za-z]{3}", "%%": "%"}


def pattern_regex(pattern: str) -> re.Pattern[str]:
    """A regular expression finding ``pattern`` (strptime codes: %Y %y %m %d %j %H %M %S
    %b) inside a longer name; ValueError for other codes."""
    parts = re.split(r"(%.)", pattern)
    out = []
    for part in parts:
        if part.startswith("%") and len(part) == 2:
            if part not in _CODES:
                raise ValueError(f"{part} is not supported: use %Y %y %m %d %j %H %M %S %b")
            out.append(_CODES[part])
        else:
            out.append(re.escape(part))
    return re.compile("(" + "".join(out) + ")")


def pattern_time(pattern: str, text: str) -> datetime | None:
    """The first match of ``pattern`` (see :func:`pattern_regex`) in ``text``, parsed."""
    for m in pattern_regex(pattern).finditer(text):
        try:
            return datetime.strptime(m.group(1), pattern).replace(tzinfo=UTC)
        except ValueError:
            continue
    return None


def scale_offset(sensor: str, level2: bool, acquired: datetime | None) -> tuple[float, float]:
    """DN -> reflectance for a sensor (CF scale_factor, add_offset)."""
    if sensor == SENTINEL2:
        # L1C/L2A: reflectance = (DN + offset) / 10000, offset -1000 since baseline 04.00.
        late = acquired is not None and acquired >= _S2_OFFSET_SINCE
        return 1e-4, (-0.1 if late else 0.0)
    if sensor == LANDSAT:
        # Collection 2 level-2 surface reflectance, else level-1 TOA reflectance.
        return (2.75e-5, -0.2) if level2 else (2e-5, -0.1)
    return 1.0, 0.0


def band_table(sensor: str) -> dict[str, BandInfo]:
    return {SENTINEL2: S2_BANDS, LANDSAT: LANDSAT_BANDS}.get(sensor, {})


def lookup_band(sensor: str, name: str) -> BandInfo | None:
    """Find a band of ``sensor`` by id (B02) or common name (blue), or a usual alias of
    one (r -> red); nir and nir08 stand for each other where a sensor has only one."""
    table = band_table(sensor)
    key = name.strip()
    if key.upper() in table:
        return table[key.upper()]
    common = ALIASES.get(key.lower(), key.lower())
    for want in MODEL_ALIASES.get(common, (common,)):
        for b in table.values():
            if b.common_name == want:
                return b
    return None


def common_name_info(name: str) -> BandInfo:
    """Band metadata for a user-named generic band (wavelength from Sentinel-2 if known)."""
    for b in S2_BANDS.values():
        if b.common_name == name.lower():
            return BandInfo(name, b.common_name, b.center_wavelength)
    return BandInfo(name, name.lower(), None)
