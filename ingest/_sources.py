"""Find and check the inputs of an ingest before anything is written.

Turns PATH arguments into :class:`SceneSource` descriptions: a multi-band
GeoTIFF/COG, a per-band set (Sentinel-2 ``*_B02.jp2``, Landsat ``*_B4.TIF``, or
generic single-band files sharing a stem and ending in a band token, ``a_b3.tif
a_b4.tif``, or stacked with ``--stack``), a folder of scene folders, or a dataset
folder of scenes with a folder of masks paired by file stem. Every file is opened
and its first and last blocks decoded, so a truncated or corrupt file is refused up
front. Acquisition times come from ``--datetime`` (one, or one per path), a
``--datetime-from`` pattern, the names (product ids, scene ids, dates), or TIFF tags.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from chunkstore import InputError, validate_scene_id
from chunkstore.errors import InvalidIdError

from ._label_polygons import PolygonLabel, polygon_label
from ._label_raster import RasterLabel, raster_label
from ._label_source import Footprint, LabelSource
from ._rasters import check_raster, fail, quiet_gdal
from ._sensors import (
    ALIASES,
    COMMON_NAMES,
    GENERIC,
    LANDSAT,
    LANDSAT_OPTIONAL,
    LANDSAT_THERMAL,
    SENTINEL2,
    BandInfo,
    band_table,
    common_name_info,
    is_product_id,
    landsat_legacy,
    lookup_band,
    name_time,
    pattern_regex,
    pattern_time,
    recognise,
    scale_offset,
)
from ._target import RasterMeta

RASTER_SUFFIXES = {".tif", ".tiff", ".jp2", ".vrt", ".img", ".nc"}
VECTOR_SUFFIXES = {".geojson", ".json", ".gpkg", ".shp", ".fgb", ".parquet"}
IMAGE_DIRS = ("images", "image", "imgs", "scenes", "img")
MASK_DIRS = ("masks", "mask", "labels", "label", "gt", "annotations")
_UNNAMED = re.compile(r"(?i)^b\d+$")  # b1, b2, ...: bands without a common name
# A band token ending a file stem (a_b3, scene_band04, lsat7_2000_10, tile-red) or,
# if a name, starting it (red_band, nir-2019).
_NAMES = "|".join(sorted(set(COMMON_NAMES) | set(ALIASES), key=len, reverse=True))
_TRAILING_TOKEN = re.compile(rf"(?i)^(.+?)[_.-]+((?:b|band)?\d{{1,3}}|{_NAMES})$")
_LEADING_TOKEN = re.compile(rf"(?i)^({_NAMES}|(?:b|band)\d{{1,3}})[_.-]+(.+)$")
_BARE_TOKEN = re.compile(rf"(?i)^({_NAMES}|(?:b|band)\d{{1,3}})$")

log = logging.getLogger("satchunk.ingest")


@dataclass(frozen=True)
class BandSource:
    path: str
    index: int  # 1-based band index in the file
    info: BandInfo
    meta: RasterMeta


@dataclass(frozen=True)
class SceneSource:
    item_id: str
    sensor: str
    bands: tuple[BandSource, ...]
    scale: float
    offset: float
    nodata: float | None
    dtype: str
    acquired: datetime | None
    aux: tuple[tuple[str, BandSource], ...] = ()
    label: LabelSource | None = None
    level2: bool = False
    files: tuple[str, ...] = field(default=(), compare=False)
    # per band (scale, offset): stored as float32 reflectance instead of scaled DN
    band_scales: tuple[tuple[float, float], ...] = ()

    @property
    def stored(self) -> tuple[str, float | None, float, float]:
        """(dtype, fill, scale_factor, add_offset) of the scene's ``reflectance`` array."""
        if self.band_scales:
            return "float32", float("nan"), 1.0, 0.0
        return self.dtype, self.nodata, self.scale, self.offset


@dataclass(frozen=True)
class Reading:
    """How to read the inputs, beyond the paths: the ingest's options."""

    sensor: str = "auto"
    bands: tuple[str, ...] | None = None
    stack: bool = False
    times: tuple[str, ...] = ()  # --datetime: one for all paths, or one per path
    time_pattern: str | None = None  # --datetime-from
    scale: tuple[float, ...] = ()  # one for all bands, or one per band
    offset: tuple[float, ...] = ()


def scene_pixel_type(metas: Sequence[RasterMeta], nodata: float | None,
                     integer_dtype: str | None = None) -> tuple[str, float]:
    """The stored dtype and fill value of a scene made of ``metas``.

    Floating-point sources (float16/32/64) give float32 with NaN as the fill: float32
    holds every float16/float32 value exactly and float64 reflectance to ~7 significant
    digits (values beyond float32's range are refused when read). Integer sources keep
    ``integer_dtype`` (or the common integer type of the files) with ``nodata`` as the
    fill, 0 when the files declare none.
    """
    import numpy as np

    if any(np.dtype(m.dtype).kind == "f" for m in metas):
        return "float32", float("nan")
    dtype = integer_dtype or str(np.result_type(*[m.dtype for m in metas]))
    return dtype, 0 if nodata is None else nodata


def _legacy_landsat(path: Path, mission: str) -> InputError:
    return fail(
        path, f"{mission} product; Landsat 4-7 band numbering is not supported by the "
        "landsat reader (B1 is blue and B4 is NIR there, not coastal and red as on Landsat "
        "8/9)", "ingest it anyway with --sensor generic --bands blue,green,red,... naming "
        "each file's band in file-name order (one multi-band file: its bands in order)")


def _raster_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and p.suffix.lower() in RASTER_SUFFIXES)


def _dataset_dirs(folder: Path) -> tuple[Path, Path] | None:
    names = {p.name.lower(): p for p in folder.iterdir() if p.is_dir()}
    img = next((names[n] for n in IMAGE_DIRS if n in names), None)
    msk = next((names[n] for n in MASK_DIRS if n in names), None)
    return (img, msk) if img and msk else None


def _item_id(text: str, origin: str) -> str:
    try:
        return validate_scene_id(text)
    except InvalidIdError:
        fix = ("rename it with single underscores ('__' is reserved for masks, "
               "SCENE__MODEL)" if "__" in text else "rename it using only A-Z a-z 0-9 . _ -")
        raise InputError(f"{origin}: gives item id {text!r}, which is not a valid scene id: "
                         f"{fix}") from None


def _parse_time(value: str) -> datetime:
    try:
        t = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise InputError(
            f"--datetime {value!r} is not ISO 8601: use e.g. 2021-06-30T10:20:00Z"
        ) from None
    return t.astimezone(UTC) if t.tzinfo else t.replace(tzinfo=UTC)


def _path_times(values: Sequence[str], paths: Sequence[str]) -> list[datetime | None]:
    """--datetime per path: none, one for all, or one per path in order."""
    if not values:
        return [None] * len(paths)
    times = [_parse_time(v) for v in values]
    if len(times) == 1:
        return times * len(paths)
    if len(times) != len(paths):
        raise InputError(f"--datetime gives {len(times)} times for {len(paths)} paths: give "
                         "one for all, or one per path in the same order")
    return list(times)


def _scene_time(files: Sequence[Path], folder: Path | None, product: str | None,
                given: datetime | None, pattern: str | None) -> datetime | None:
    """The acquisition time: given, else by --datetime-from, else from the product, file
    and folder names, else the files' TIFF tags (None: the caller falls back)."""
    if given is not None:
        return given
    names = ([product] if product else []) + [f.stem for f in files]
    for parent in [folder] if folder else [files[0].parent]:
        names += [n for n in (parent.name, parent.parent.name) if n]
    for name in names:
        t = pattern_time(pattern, name) if pattern else name_time(name)
        if t is not None:
            return t
    if pattern:
        raise InputError(f"--datetime-from {pattern!r} matches none of {', '.join(names[:3])}:"
                         " give the pattern of the date in these names, e.g. %Y%m%d")
    return _file_time([str(f) for f in files])


def _file_time(files: Sequence[str]) -> datetime | None:
    import rasterio

    for f in files:
        try:
            with quiet_gdal(), rasterio.open(f) as ds:
                stamp = ds.tags().get("TIFFTAG_DATETIME")
        except Exception:  # best effort; check_raster reports broken files
            continue
        if stamp:
            try:
                return datetime.strptime(stamp, "%Y:%m:%d %H:%M:%S").replace(tzinfo=UTC)
            except ValueError:
                continue
    return None


def _requested(bands: Sequence[str] | None) -> list[str] | None:
    if not bands:
        return None
    names = [b.strip() for b in bands if b.strip()]
    if len(set(n.lower() for n in names)) != len(names):
        raise InputError(f"--bands {','.join(names)} names a band twice: name each band once")
    return names


def stac_common_name(name: str) -> str | None:
    """A band's STAC ``common_name``: None for an unnamed b1, b2, ..."""
    return None if _UNNAMED.match(name) else name


def generic_band(name: str) -> BandInfo:
    """A user-named band of a generic scene: a common name (or a usual alias of one, r ->
    red) or an unnamed b1, b2, ...; anything else is refused, as no model could find it."""
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    if key in COMMON_NAMES:
        return common_name_info(key)
    if _UNNAMED.match(key):
        return BandInfo(key, key)
    raise InputError(f"--bands: {name!r} is not a band name models know: use common names ("
                     f"{', '.join(COMMON_NAMES)}), or b1, b2, ... for a band without one")


def _check_crs(sources: Sequence[BandSource], item: str) -> None:
    from pyproj import CRS

    first = sources[0]
    ref = CRS.from_wkt(first.meta.crs_wkt)
    for s in sources[1:]:
        if not CRS.from_wkt(s.meta.crs_wkt).equals(ref):
            raise InputError(
                f"{s.path}: CRS {CRS.from_wkt(s.meta.crs_wkt).to_string()} differs from "
                f"{first.path} ({ref.to_string()}) in scene {item}: reproject the bands to one "
                "CRS first (gdalwarp -t_srs ...)"
            )


def _bounds(m: RasterMeta) -> tuple[float, float, float, float]:
    a, _, c, _, e, f = m.transform
    xs, ys = (c, c + a * m.width), (f, f + e * m.height)
    return min(xs), min(ys), max(xs), max(ys)


def _unit(crs_wkt: str) -> str:
    from pyproj import CRS

    crs = CRS.from_wkt(crs_wkt)
    if crs.is_geographic:
        return "°"
    name = crs.axis_info[0].unit_name if crs.axis_info else "metre"
    return " m" if name in ("metre", "meter") else f" {name}"


def _show(bounds: tuple[float, ...], unit: str) -> str:
    digits = 6 if unit == "°" else 1
    return ", ".join(f"{v:.{digits}f}" for v in bounds)


def _check_extents(sources: Sequence[BandSource], item: str) -> None:
    """Bands of one scene cover one area: crops differ by a coarse pixel or so (the
    Sentinel-2 60 m bands end up to 50 m off the 10 m ones); a band from another scene,
    or cut or resampled to another extent, is refused rather than padded with nodata."""
    finest = min(sources, key=lambda s: s.meta.resolution)
    ref = _bounds(finest.meta)
    bad = next((s for s in sources if not _same_area(s.meta, finest.meta)), None)
    if bad is not None:
        unit = _unit(finest.meta.crs_wkt)
        raise InputError(
            f"{bad.path}: covers ({_show(_bounds(bad.meta), unit)}) at "
            f"{bad.meta.resolution:g}{unit}, but {finest.path} covers ({_show(ref, unit)}) at "
            f"{finest.meta.resolution:g}{unit} in scene {item}: bands of one scene must cover "
            "one area; use the band files of one scene, cut to the same extent")


def _same_area(a: RasterMeta, b: RasterMeta) -> bool:
    """Equal extents within two pixels of the coarser of the two."""
    tol = 2 * max(a.resolution, b.resolution)
    return all(abs(x - y) <= tol for x, y in zip(_bounds(a), _bounds(b), strict=True))


def _band_set(files: list[Path], sensor: str, bands: list[str] | None, item: str,
              when: datetime | None, reading: Reading) -> SceneSource:
    """A Sentinel-2 or Landsat per-band set recognised from file names."""
    found: dict[str, Path] = {}
    aux: dict[str, Path] = {}
    level2 = False
    for f in files:
        r = recognise(f.stem, f.suffix, hint=sensor)
        if r is None:
            continue
        level2 = level2 or r.level2
        if r.band:  # the first (finest: R10m before R20m) of a band given at several
            found.setdefault(r.band, f)
        elif r.aux:
            aux.setdefault(r.aux, f)
    table = band_table(sensor)
    if bands:
        chosen = []
        for name in bands:
            info = lookup_band(sensor, name)
            if info is None or info.name not in found:
                have = ", ".join(f"{b} ({table[b].common_name})" for b in sorted(found))
                raise InputError(f"--bands: {name!r} is not among the {sensor} band files of "
                                 f"{item} ({have}): pick from those")
            chosen.append(info.name)
    else:
        skip = (LANDSAT_THERMAL | LANDSAT_OPTIONAL) if sensor == LANDSAT else set()
        chosen = [b for b in table if b in found and b not in skip]
    thermal = [b for b in chosen if sensor == LANDSAT and b in LANDSAT_THERMAL]
    if thermal:
        raise InputError(f"--bands: {', '.join(thermal)} are thermal (brightness temperature, "
                         "not reflectance): leave them out of --bands")
    if not chosen:
        raise InputError(f"{item}: no {sensor} band files found: expected names like "
                         + ("*_B02.jp2" if sensor == SENTINEL2 else "*_B4.TIF"))
    sources = tuple(BandSource(str(found[b]), 1, table[b], check_raster(str(found[b])))
                    for b in chosen)
    aux_sources = tuple((k, BandSource(str(p), 1, BandInfo(k.upper(), k),
                                       check_raster(str(p)))) for k, p in sorted(aux.items()))
    for s in sources:
        if s.meta.count != 1:
            raise fail(s.path, f"has {s.meta.count} bands, expected one",
                       "give single-band files for a per-band set")
    _check_crs(list(sources) + [a for _, a in aux_sources], item)
    _check_extents(list(sources) + [a for _, a in aux_sources], item)
    scale, offset, per_band = _radiometry(scale_offset(sensor, level2, when), len(sources),
                                          reading, item)
    dtype, nodata = scene_pixel_type([s.meta for s in sources], 0, "uint16")
    return SceneSource(item, sensor, sources, scale, offset, nodata, dtype, when, aux_sources,
                       level2=level2,
                       files=tuple(s.path for s in sources) + tuple(a.path for _, a in aux_sources),
                       band_scales=per_band)


def _radiometry(sensor_default: tuple[float, float], n: int, reading: Reading, item: str,
                ) -> tuple[float, float, tuple[tuple[float, float], ...]]:
    """(scale, offset, per-band pairs) of a scene of ``n`` bands: the sensor's, or
    --scale/--offset given once for all bands or once per band."""
    if not reading.scale and not reading.offset:
        return (*sensor_default, ())
    pairs = []
    for flag, given, default in (("--scale", reading.scale, sensor_default[0]),
                                 ("--offset", reading.offset, sensor_default[1])):
        values = list(given) or [default]
        if len(values) not in (1, n):
            raise InputError(f"{flag} gives {len(values)} values for the {n} bands of {item}: "
                             "give one for all bands, or one per band in band order")
        pairs.append(values * n if len(values) == 1 else values)
    scales, offsets = pairs
    if len(set(scales)) == 1 and len(set(offsets)) == 1:
        return scales[0], offsets[0], ()
    return 1.0, 0.0, tuple(zip(scales, offsets, strict=True))


def _generic_scene(files: list[Path], metas: list[RasterMeta], sensor: str,
                   bands: list[str] | None, item: str, when: datetime | None,
                   reading: Reading) -> SceneSource:
    """One multi-band file, or several single-band files stacked in the given order."""
    if len(files) == 1:
        meta = metas[0]
        pairs = [(str(files[0]), i + 1, meta) for i in range(meta.count)]
    else:
        for f, m in zip(files, metas, strict=True):
            if m.count != 1:
                raise fail(f, f"has {m.count} bands", "stack single-band files only; ingest "
                           "a multi-band file on its own")
        pairs = [(str(f), 1, m) for f, m in zip(files, metas, strict=True)]
    if bands is not None and len(bands) != len(pairs):
        where = files[0] if len(files) == 1 else f"{len(files)} files of {item}"
        hint = f"name exactly {len(pairs)} band{'s' * (len(pairs) != 1)} in file order"
        if len(pairs) == 1:
            hint += (f"; to stack {len(bands)} single-band files as the bands of one scene, "
                     "pass them together with --stack")
        raise InputError(f"{where}: has {len(pairs)} band{'s' * (len(pairs) != 1)} but --bands "
                         f"names {len(bands)} ({','.join(bands)}): {hint}")
    if sensor in (SENTINEL2, LANDSAT):
        infos = []
        for name in bands or []:
            info = lookup_band(sensor, name)
            if info is None:
                raise InputError(f"--bands: {name!r} is not a {sensor} band: use ids or common "
                                 "names such as blue,green,red,nir")
            infos.append(info)
        if not infos:
            raise InputError(f"{files[0]}: a stacked {sensor} file needs --bands to name its "
                             f"{len(pairs)} bands in order (e.g. blue,green,red,nir)")
    else:
        infos = [generic_band(n) for n in bands or [f"b{i + 1}" for i in range(len(pairs))]]
    sources = tuple(BandSource(p, i, info, m) for (p, i, m), info in zip(pairs, infos,
                                                                         strict=True))
    _check_crs(sources, item)
    _check_extents(sources, item)
    dtype, nodata = scene_pixel_type(metas, metas[0].nodata)
    default = (scale_offset(sensor, False, when) if sensor in (SENTINEL2, LANDSAT)
               else (1.0, 0.0))
    scale, offset, per_band = _radiometry(default, len(sources), reading, item)
    return SceneSource(item, sensor, sources, scale, offset, nodata, dtype, when,
                       files=tuple(str(f) for f in files), band_scales=per_band)


def _band_token(stem: str) -> tuple[str, str] | None:
    """(common stem, band token) of a band file's stem: ('a', 'b3') for a_b3, ('band',
    'red') for red_band."""
    m = _TRAILING_TOKEN.match(stem)
    if m:
        return m.group(1), m.group(2).lower()
    m = _LEADING_TOKEN.match(stem)
    if m:
        return m.group(2), m.group(1).lower()
    return ("", stem.lower()) if _BARE_TOKEN.match(stem) else None  # red.tif, b4.tif


def _token_name(token: str) -> str | None:
    """The common name a band token spells (red, r -> red), else None."""
    name = ALIASES.get(token, token)
    return name if name in COMMON_NAMES else None


def _token_order(token: str) -> tuple[int, float, str]:
    """Band files in band order: numbers as numbers (b2 < b10), names by wavelength."""
    name = _token_name(token)
    if name is not None:
        return 1, common_name_info(name).center_wavelength or 99.0, token
    return 0, float(re.sub(r"\D", "", token) or 0), token


def _band_order(files: list[Path], bands: list[str] | None, given_order: bool,
                ) -> tuple[list[Path], list[str] | None]:
    """Stacked files in band order, with their band names. Files named for their bands
    (red_band, tile_nir) take those names, in wavelength order or in the order of
    ``bands``, which must name the same bands; files numbered (a_b3, x_10) are ordered by
    number unless ``given_order``; others keep their order."""
    if len(files) < 2:
        return files, bands
    tokens = [_band_token(f.stem) for f in files]
    names = [_token_name(t[1]) if t else None for t in tokens]
    if all(names) and len(set(names)) == len(names):
        if bands is None:
            order = sorted(range(len(files)), key=lambda i: _token_order(tokens[i][1]))
            return [files[i] for i in order], [names[i] for i in order]
        want = [ALIASES.get(b.lower(), b.lower()) for b in bands]
        if sorted(want) != sorted(names):
            raise InputError(f"--bands names {','.join(bands)} but the files are named for "
                             f"{','.join(names)}: leave --bands out (the names are read from "
                             "the files) or name those bands")
        return [files[names.index(w)] for w in want], bands
    if all(tokens) and not given_order:
        return sorted(files, key=lambda f: _token_order(_band_token(f.stem)[1])), bands
    return files, bands


def _common_stem(files: Sequence[Path]) -> str:
    """The stem files share beside their band tokens (a of a_b3, a_b4), else their
    common prefix."""
    tokens = [_band_token(f.stem) for f in files]
    if all(tokens) and len({t[0] for t in tokens}) == 1 and tokens[0][0]:
        return tokens[0][0].rstrip("_-. ")
    return os.path.commonprefix([f.stem for f in files]).rstrip("_-. ")


def _band_groups(files: list[Path]) -> list[tuple[str, list[Path]]]:
    """Files split into scenes: single files, and sets sharing a stem beside a band
    token (a_b3.tif a_b4.tif, lsat7_2000_10.tif lsat7_2000_20.tif, red_band.tif
    nir_band.tif) whose files are single-band rasters of one area (else each file is a
    scene of its own)."""
    by_stem: dict[str, list[Path]] = {}
    for f in files:
        tok = _band_token(f.stem)
        by_stem.setdefault(tok[0] if tok else f"\0{f}", []).append(f)
    out = []
    for stem, group in by_stem.items():
        metas = [check_raster(str(f)) for f in group]
        one_area = all(m.count == 1 and _same_area(m, metas[0]) for m in metas)
        if len(group) > 1 and one_area:
            out.append((stem.rstrip("_-. "), group))
        else:
            out += [(f.stem, [f]) for f in group]
    return out


def _scenes_from_unit(files: list[Path], reading: Reading, given: dict[Path, datetime | None],
                      folder: Path | None) -> list[SceneSource]:
    sensor, bands = reading.sensor, list(reading.bands) if reading.bands else None
    recognised = {}
    if sensor in ("auto", LANDSAT):
        for f in files:
            mission = landsat_legacy(f.stem)
            r = recognise(f.stem, f.suffix) if mission else None
            if mission and (sensor == LANDSAT or (r is not None and r.sensor == LANDSAT)):
                raise _legacy_landsat(f, mission)
    if sensor != GENERIC:
        rec = [(f, recognise(f.stem, f.suffix)) for f in files]
        if sensor == "auto":
            kinds = {r.sensor for _, r in rec if r is not None}
            if SENTINEL2 in kinds:
                kinds = {SENTINEL2}
        else:
            kinds = {sensor}
        for kind in kinds:
            for f in files:
                r = recognise(f.stem, f.suffix, hint=kind)
                if r is not None and r.sensor == kind:
                    recognised.setdefault((kind, r.product), []).append(f)
    if reading.stack and (sum(map(len, recognised.values())) < len(files) or not all(
            is_product_id(product, kind) for kind, product in recognised)):
        recognised = {}  # --stack stacks them, unless they are one product's band files
    scenes = []
    for (kind, product), group in sorted(recognised.items()):
        stem = product.rstrip("_-.")
        parent = folder or group[0].parent
        item = _item_id(stem if len(stem) >= 8 else parent.name, str(parent))
        t = _scene_time(group, folder, stem, given[group[0]], reading.time_pattern)
        scenes.append(_band_set(group, kind, bands, item, t, reading))
    if scenes:
        return scenes
    kind = sensor if sensor in (SENTINEL2, LANDSAT) else GENERIC
    if reading.stack or (sensor == GENERIC and len(files) > 1 and folder is not None):
        stem = folder.name if folder else _common_stem(files)
        groups = [(stem if len(stem) >= 3 or not stem else files[0].stem, files)]
    else:
        groups = _band_groups(files)
    out = []
    for stem, files_of in groups:
        if len(files_of) > 1 and stem.lower() in ("band", "bands", ""):
            # red_band.tif nir_band.tif, red.tif nir.tif: their folder names the scene
            stem = (folder or files_of[0].resolve().parent).name
        group, names = _band_order(files_of, bands, reading.stack and folder is None)
        item = _item_id(stem, str(folder or group[0]))
        metas = [check_raster(str(f)) for f in group]
        t = _scene_time(group, folder if len(groups) == 1 else None, None, given[group[0]],
                        reading.time_pattern)
        out.append(_generic_scene(group, metas, kind, names, item, t, reading))
    return out


# Folders of a product that hold no scene's bands (Sentinel-2 SAFE quality masks and
# auxiliary data, Sentinel-1 annotations and previews).
NOT_SCENES = {"qi_data", "aux_data", "html", "rep_info", "datastrip", "annotation", "preview",
              "support"}
_RES_DIR = re.compile(r"(?i)^R\d+m$")  # Sentinel-2 L2A IMG_DATA/R10m, R20m, R60m


def _scene_folders(folder: Path) -> list[tuple[Path, list[Path]]]:
    """(folder, its raster files) of each scene at or below ``folder``: the folder if it
    holds rasters, or the union of its R10m/R20m/R60m folders, else every folder below
    it that does (a folder of scene folders), in name order."""
    files = _raster_files(folder)
    if files:
        return [(folder, files)]
    subs = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")
                  and p.name.lower() not in NOT_SCENES)
    if subs and all(_RES_DIR.match(p.name) for p in subs):
        return [(folder, [f for p in subs for f in _raster_files(p)])]
    return [unit for sub in subs for unit in _scene_folders(sub)]


def _footprint(scene: SceneSource) -> Footprint:
    finest = min(scene.bands, key=lambda b: b.meta.resolution).meta
    return Footprint(scene.item_id, finest.crs_wkt, _bounds(finest))


def discover(paths: Sequence[str], reading: Reading = Reading(), labels: str | None = None,
             label_field: str | None = None, classes: Sequence[str] | None = None,
             nodata_class: int | None = None) -> list[SceneSource]:
    """Every scene named by ``paths``, checked; raises InputError on the first problem."""
    if not paths:
        raise InputError("no input given: pass one or more files or folders")
    bands = _requested(reading.bands)
    reading = replace(reading, bands=tuple(bands) if bands else None)
    if reading.times and reading.time_pattern:
        raise InputError("--datetime and --datetime-from both say when the scenes were "
                         "taken: give one of them")
    if reading.time_pattern:
        try:
            pattern_regex(reading.time_pattern)
        except ValueError as exc:
            raise InputError(f"--datetime-from {reading.time_pattern!r}: {exc}") from None
    times = _path_times(reading.times, paths)
    scenes: list[SceneSource] = []
    loose: dict[Path, datetime | None] = {}
    for raw, when in zip(paths, times, strict=True):
        if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", raw):
            raise fail(raw, "is a URL; ingest reads local files and folders",
                       "download it first (e.g. aws s3 cp URL . or curl -O URL)")
        p = Path(raw).expanduser()
        if not p.exists():
            raise fail(raw, "no such file or directory", "check the path")
        if p.is_dir():
            pair = _dataset_dirs(p)
            if pair:
                scenes += _dataset(pair[0], pair[1], reading, when, classes, nodata_class)
                continue
            units = _scene_folders(p)
            if not units:
                raise fail(raw, "folder holds no raster files (.tif, .jp2, .vrt, .nc), nor do the "
                           "folders in it", "point at the folder of band files or at a file")
            for unit, files in units:
                scenes += _scenes_from_unit(files, reading, dict.fromkeys(files, when), unit)
        else:
            loose[p] = when
    if loose:
        scenes += _scenes_from_unit(list(loose), reading, loose, None)
    ids = [s.item_id for s in scenes]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise InputError(f"several inputs give the same item id {dupes[0]!r}: rename them or "
                         "ingest them into different collections")
    if labels:
        lp = Path(labels).expanduser()
        if lp.is_dir():
            scenes = [_paired(s, lp, classes, nodata_class) for s in scenes]
        elif lp.suffix.lower() in VECTOR_SUFFIXES:
            vec = polygon_label(str(lp), label_field, [_footprint(s) for s in scenes])
            scenes = [_with_label(s, vec) for s in scenes]
        else:
            lab = raster_label(str(lp), classes, [_footprint(s) for s in scenes], nodata_class)
            scenes = [_with_label(s, lab) for s in scenes]
    elif label_field:
        raise InputError("--label-field is only used with --labels: add --labels PATH")
    elif nodata_class is not None:
        raise InputError("--nodata-class is only used with --labels: add --labels PATH")
    return scenes


def _with_label(scene: SceneSource, label: RasterLabel | PolygonLabel) -> SceneSource:
    return replace(scene, label=label, files=scene.files + (label.path,))


def _paired(scene: SceneSource, folder: Path, classes: Sequence[str] | None,
            nodata_class: int | None) -> SceneSource:
    stems = {scene.item_id} | {Path(f).stem for f in scene.files}
    for f in _raster_files(folder):
        if f.stem in stems:
            return _with_label(scene, raster_label(str(f), classes, [_footprint(scene)],
                                                   nodata_class))
    raise InputError(f"{folder}: no mask named like {scene.item_id}.tif for scene "
                     f"{scene.item_id}: masks are paired with scenes by file stem")


def _dataset(images: Path, masks: Path, reading: Reading, when: datetime | None,
             classes: Sequence[str] | None, nodata_class: int | None) -> list[SceneSource]:
    mask_by_stem = {f.stem: f for f in _raster_files(masks)}
    out = []
    for img in _raster_files(images):
        m = mask_by_stem.get(img.stem)
        if m is None:
            raise InputError(f"{img}: no mask {masks / (img.stem + '.tif')} with the same stem: "
                             "add it or move the scene out of the dataset")
        (scene,) = _scenes_from_unit([img], replace(reading, stack=False), {img: when}, None)
        out.append(_with_label(scene, raster_label(str(m), classes, [_footprint(scene)],
                                                   nodata_class)))
    if not out:
        raise InputError(f"{images}: no scenes in the dataset's image folder")
    return out


def fingerprint(scene: SceneSource, params: dict[str, object]) -> str:
    """A hash of the inputs (path, size, mtime) and parameters; equal means same output."""
    import hashlib
    import json

    h = hashlib.sha256()
    for f in scene.files:
        st = os.stat(f)
        h.update(f"{os.path.abspath(f)}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    h.update(json.dumps(params, sort_keys=True, default=str).encode())
    h.update(repr((scene.bands, _LabelKey(scene.label), scene.scale, scene.offset,
                   scene.dtype, scene.nodata)).encode())
    if scene.band_scales:
        h.update(repr(scene.band_scales).encode())
    return h.hexdigest()[:32]


@dataclass(frozen=True)
class _LabelKey:
    """A label as the fingerprint has always spelled it (the one record of both kinds
    that labels were before each had its module), so scenes ingested earlier with the
    same label are not ingested again."""

    label: LabelSource | None

    def __repr__(self) -> str:
        lab = self.label
        if lab is None:
            return "None"
        vector = isinstance(lab, PolygonLabel)
        values, extra = lab.values if vector else (), ""
        if isinstance(lab, RasterLabel):
            if lab.values != tuple(range(len(lab.classes))):
                values = lab.values
            if lab.nodata_class is not None:
                extra = f", nodata_class={lab.nodata_class!r}"
        return (f"LabelSource(path={lab.path!r}, kind={'vector' if vector else 'raster'!r}, "
                f"classes={lab.classes!r}, field={lab.field if vector else None!r}, "
                f"values={values!r}{extra})")
