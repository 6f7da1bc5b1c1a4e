"""Find and check the inputs of an ingest before anything is written.

Turns PATH arguments into :class:`SceneSource` descriptions: a multi-band
GeoTIFF/COG, a per-band set (Sentinel-2 ``*_B02.jp2``, Landsat ``*_B4.TIF``, or
generic single-band files named with ``--bands``), or a dataset folder of scenes
with a folder of masks paired by file stem. Every file is opened and its first
and last blocks decoded, so a truncated or corrupt file is refused up front.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from chunkstore import InputError, validate_id
from chunkstore.errors import InvalidIdError

from ._label_polygons import PolygonLabel, polygon_label
from ._label_raster import RasterLabel, raster_label
from ._label_source import LabelSource
from ._rasters import check_raster, fail
from ._sensors import (
    GENERIC,
    LANDSAT,
    LANDSAT_OPTIONAL,
    LANDSAT_THERMAL,
    SENTINEL2,
    BandInfo,
    acquisition_time,
    band_table,
    common_name_info,
    landsat_legacy,
    lookup_band,
    recognise,
    scale_offset,
)
from ._target import RasterMeta

RASTER_SUFFIXES = {".tif", ".tiff", ".jp2", ".vrt", ".img"}
VECTOR_SUFFIXES = {".geojson", ".json", ".gpkg", ".shp", ".fgb", ".parquet"}
IMAGE_DIRS = ("images", "image", "imgs", "scenes", "img")
MASK_DIRS = ("masks", "mask", "labels", "label", "gt", "annotations")


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
        return validate_id(text, "item id")
    except InvalidIdError:
        raise InputError(
            f"{origin}: gives item id {text!r}, which is not a valid key: rename it using only "
            "A-Z a-z 0-9 . _ -"
        ) from None


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InputError(
            f"--datetime {value!r} is not ISO 8601: use e.g. 2021-06-30T10:20:00Z"
        ) from None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def _file_time(files: Sequence[str]) -> datetime | None:
    import rasterio

    for f in files:
        try:
            with rasterio.open(f) as ds:
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


def _show(bounds: tuple[float, ...]) -> str:
    return ", ".join(f"{v:.0f}" for v in bounds)


def _check_extents(sources: Sequence[BandSource], item: str) -> None:
    """Bands of one scene cover one area: crops differ by a coarse pixel or so (the
    Sentinel-2 60 m bands end up to 50 m off the 10 m ones); a band from another scene,
    or cut or resampled to another extent, is refused rather than padded with nodata."""
    finest = min(sources, key=lambda s: s.meta.resolution)
    ref = _bounds(finest.meta)
    for s in sources:
        tol = 2 * max(s.meta.resolution, finest.meta.resolution)
        got = _bounds(s.meta)
        if any(abs(g - r) > tol for g, r in zip(got, ref, strict=True)):
            raise InputError(
                f"{s.path}: covers ({_show(got)}) at {s.meta.resolution:g} m, but "
                f"{finest.path} covers ({_show(ref)}) at {finest.meta.resolution:g} m in scene "
                f"{item}: bands of one scene must cover one area; use the band files of one "
                "scene, cut to the same extent")


def _band_set(files: list[Path], sensor: str, bands: list[str] | None, item: str,
              when: datetime | None) -> SceneSource:
    """A Sentinel-2 or Landsat per-band set recognised from file names."""
    found: dict[str, Path] = {}
    aux: dict[str, Path] = {}
    level2 = False
    for f in files:
        r = recognise(f.stem, f.suffix, hint=sensor)
        if r is None:
            continue
        level2 = level2 or r.level2
        if r.band:
            found[r.band] = f
        elif r.aux:
            aux[r.aux] = f
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
    scale, offset = scale_offset(sensor, level2, when)
    dtype, nodata = scene_pixel_type([s.meta for s in sources], 0, "uint16")
    return SceneSource(item, sensor, sources, scale, offset, nodata, dtype, when, aux_sources,
                       level2=level2,
                       files=tuple(s.path for s in sources) + tuple(a.path for _, a in aux_sources))


def _generic_scene(files: list[Path], sensor: str, bands: list[str] | None, item: str,
                   when: datetime | None) -> SceneSource:
    """One multi-band file, or several single-band files stacked in name order."""
    metas = [check_raster(str(f)) for f in files]
    if len(files) == 1:
        meta = metas[0]
        pairs = [(str(files[0]), i + 1, meta) for i in range(meta.count)]
    else:
        for f, m in zip(files, metas, strict=True):
            if m.count != 1:
                raise fail(f, f"has {m.count} bands", "a per-band set needs single-band files")
        pairs = [(str(f), 1, m) for f, m in zip(files, metas, strict=True)]
    if bands is not None and len(bands) != len(pairs):
        where = files[0] if len(files) == 1 else f"{len(files)} files of {item}"
        raise InputError(f"{where}: has {len(pairs)} bands but --bands names {len(bands)} "
                         f"({','.join(bands)}): name exactly {len(pairs)} bands in file order")
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
        names = bands or [f"b{i + 1}" for i in range(len(pairs))]
        infos = [common_name_info(n) for n in names]
    sources = tuple(BandSource(p, i, info, m) for (p, i, m), info in zip(pairs, infos,
                                                                         strict=True))
    _check_crs(sources, item)
    _check_extents(sources, item)
    dtype, nodata = scene_pixel_type(metas, metas[0].nodata)
    if sensor in (SENTINEL2, LANDSAT):
        scale, offset = scale_offset(sensor, False, when)
    else:
        scale, offset = 1.0, 0.0
    return SceneSource(item, sensor, sources, scale, offset, nodata, dtype, when,
                       files=tuple(str(f) for f in files))


def _scenes_from_unit(files: list[Path], sensor: str, bands: list[str] | None,
                      when: datetime | None, folder: Path | None) -> list[SceneSource]:
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
    scenes = []
    for (kind, product), group in sorted(recognised.items()):
        stem = product.rstrip("_-.")
        parent = folder or group[0].parent
        item = _item_id(stem if len(stem) >= 8 else parent.name, str(parent))
        t = when or acquisition_time(stem, kind) or _file_time([str(group[0])])
        scenes.append(_band_set(group, kind, bands, item, t))
    if scenes:
        return scenes
    if sensor == GENERIC and len(files) > 1 and folder is not None:
        item = _item_id(folder.name, str(folder))
        return [_generic_scene(files, sensor, bands, item, when or _file_time([str(files[0])]))]
    out = []
    for f in files:
        kind = sensor if sensor in (SENTINEL2, LANDSAT) else GENERIC
        item = _item_id(f.stem, str(f))
        t = when or acquisition_time(f.stem, kind) or _file_time([str(f)])
        out.append(_generic_scene([f], kind, bands, item, t))
    return out


def discover(paths: Sequence[str], sensor: str = "auto", bands: Sequence[str] | None = None,
             labels: str | None = None, label_field: str | None = None,
             classes: Sequence[str] | None = None, acquired: str | None = None,
             ) -> list[SceneSource]:
    """Every scene named by ``paths``, checked; raises InputError on the first problem."""
    if not paths:
        raise InputError("no input given: pass one or more files or folders")
    want = _requested(bands)
    when = _parse_time(acquired)
    scenes: list[SceneSource] = []
    loose: list[Path] = []
    for raw in paths:
        p = Path(raw).expanduser()
        if not p.exists():
            raise fail(raw, "no such file or directory", "check the path")
        if p.is_dir():
            pair = _dataset_dirs(p)
            if pair:
                scenes += _dataset(pair[0], pair[1], sensor, want, when, classes)
                continue
            files = _raster_files(p)
            if not files:
                raise fail(raw, "folder holds no raster files (.tif, .jp2, .vrt)",
                           "point at the folder of band files or at a file")
            scenes += _scenes_from_unit(files, sensor, want, when, p)
        else:
            loose.append(p)
    if loose:
        scenes += _scenes_from_unit(loose, sensor, want, when, None)
    ids = [s.item_id for s in scenes]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise InputError(f"several inputs give the same item id {dupes[0]!r}: rename them or "
                         "ingest them into different collections")
    if labels:
        lp = Path(labels).expanduser()
        if lp.is_dir():
            scenes = [_paired(s, lp, classes) for s in scenes]
        elif lp.suffix.lower() in VECTOR_SUFFIXES:
            vec = polygon_label(str(lp), label_field)
            scenes = [_with_label(s, vec) for s in scenes]
        else:
            scenes = [_with_label(s, raster_label(str(lp), classes)) for s in scenes]
    elif label_field:
        raise InputError("--label-field is only used with --labels: add --labels PATH")
    return scenes


def _with_label(scene: SceneSource, label: RasterLabel | PolygonLabel) -> SceneSource:
    from dataclasses import replace

    return replace(scene, label=label, files=scene.files + (label.path,))


def _paired(scene: SceneSource, folder: Path, classes: Sequence[str] | None) -> SceneSource:
    stems = {scene.item_id} | {Path(f).stem for f in scene.files}
    for f in _raster_files(folder):
        if f.stem in stems:
            return _with_label(scene, raster_label(str(f), classes))
    raise InputError(f"{folder}: no mask named like {scene.item_id}.tif for scene "
                     f"{scene.item_id}: masks are paired with scenes by file stem")


def _dataset(images: Path, masks: Path, sensor: str, bands: list[str] | None,
             when: datetime | None, classes: Sequence[str] | None) -> list[SceneSource]:
    mask_by_stem = {f.stem: f for f in _raster_files(masks)}
    out = []
    for img in _raster_files(images):
        m = mask_by_stem.get(img.stem)
        if m is None:
            raise InputError(f"{img}: no mask {masks / (img.stem + '.tif')} with the same stem: "
                             "add it or move the scene out of the dataset")
        (scene,) = _scenes_from_unit([img], sensor, bands, when, None)
        out.append(_with_label(scene, raster_label(str(m), classes)))
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
        return (f"LabelSource(path={lab.path!r}, kind={'vector' if vector else 'raster'!r}, "
                f"classes={lab.classes!r}, field={lab.field if vector else None!r}, "
                f"values={lab.values if vector else ()!r})")
