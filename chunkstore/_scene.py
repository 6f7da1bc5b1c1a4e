"""The scene Zarr (v3) schema: create, write one shard, find finished shards, read its
metadata (one ``SceneInfo`` for every reader), open.

Layout of ``zarr/<collection>/<item>.zarr``::

    reflectance      (band, y, x)  native dtype, CF scale_factor/add_offset/_FillValue
    <aux>            (y, x)        e.g. ``qa`` bit flags, stored as-is
    label            (y, x)        uint8, 255 = unlabelled, class names in attrs
    label_histogram  (shard_y, shard_x, inner_y, inner_x, class) uint32
    x, y, band, spatial_ref        coordinates and CRS WKT + GeoTransform

One shard (all bands) is one object; inner chunks (all bands) are the training
patch and carry a crc32c checksum so a damaged object is detected, not decoded.
Arrays of a shard are written auxiliaries first and ``reflectance`` last, so a
reflectance shard object marks the whole shard done. A label can also be made later
(``add_label``, then ``write_label_shard`` per shard; its histogram slot is written
last and marks the label shard done).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ._grid import ShardGrid
from ._histogram import LABEL_NODATA, chunk_histogram
from ._layout import LABEL_ARRAYS
from ._manifest import verify
from ._store import Store

REFLECTANCE = "reflectance"
LABEL = "label"
HISTOGRAM = "label_histogram"
STATS = "shard_stats"
STAT_NAMES = ("valid_pixels", "cloud_pixels")


@dataclass(frozen=True)
class SceneSchema:
    """Everything needed to lay out one scene Zarr."""

    bands: tuple[str, ...]
    dtype: str
    scale: float
    offset: float
    nodata: float
    crs_wkt: str
    transform: tuple[float, float, float, float, float, float]  # affine a, b, c, d, e, f
    grid: ShardGrid
    aux: tuple[tuple[str, str], ...] = ()  # (name, dtype) of extra (y, x) arrays
    label_classes: tuple[str, ...] | None = None
    label_source: Mapping[str, Any] | None = field(default=None, hash=False, compare=False)
    attrs: Mapping[str, Any] = field(default_factory=dict, hash=False, compare=False)

    @property
    def has_label(self) -> bool:
        return self.label_classes is not None


def grid_coords(crs_wkt: str, transform: tuple[float, ...], shape: tuple[int, int]
                ) -> dict[str, Any]:
    """x/y cell-centre coordinates and ``spatial_ref`` (CRS WKT + GeoTransform)."""
    import xarray as xr

    a, b, c, d, e, f = transform
    h, w = shape
    x = c + a * (np.arange(w) + 0.5)
    y = f + e * (np.arange(h) + 0.5)
    gdal = (c, a, b, f, d, e)
    spatial_ref = xr.DataArray(
        np.int64(0),
        attrs={
            "crs_wkt": crs_wkt,
            "spatial_ref": crs_wkt,
            "GeoTransform": " ".join(repr(float(v)) for v in gdal),
        },
    )
    return {
        "y": ("y", y, {"units": "metre", "axis": "Y"}),
        "x": ("x", x, {"units": "metre", "axis": "X"}),
        "spatial_ref": spatial_ref,
    }


def read_georef(store: Store, key: str) -> tuple[str, tuple[float, ...]]:
    """(CRS WKT, affine a..f) of a scene or mask Zarr, from its ``spatial_ref``."""
    attrs = json.loads(store.read_bytes(f"{key}/spatial_ref/zarr.json"))["attributes"]
    c, a, b, f, d, e = (float(v) for v in attrs["GeoTransform"].split())
    return attrs["crs_wkt"], (a, b, c, d, e, f)


def array_meta(store: Store, key: str) -> dict[str, Any] | None:
    """The ``zarr.json`` document of the array (or group) at ``key``, or None."""
    from .errors import NotFoundError

    try:
        return json.loads(store.read_bytes(f"{key}/zarr.json"))
    except NotFoundError:
        return None


def grid_of(attrs: Mapping[str, Any], shape: Sequence[int]) -> ShardGrid:
    """The shard grid of a scene or mask Zarr: the last two axes of ``shape`` and the
    group's ``shard``/``chunk`` attributes."""
    h, w = shape[-2:]
    return ShardGrid(int(h), int(w), int(attrs.get("shard", 2048)),
                     int(attrs.get("chunk", 256)))


@dataclass(frozen=True)
class SceneInfo:
    """What a reader needs to know of one scene Zarr (no pixels): see :func:`read_scene`."""

    key: str
    shape: tuple[int, int, int]  # bands, height, width
    grid: ShardGrid
    bands: tuple[str, ...]  # common names, from the ``band`` coordinate
    dtype: str  # stored reflectance dtype
    scale: float  # CF scale_factor
    offset: float  # CF add_offset
    fill: float | None  # the reflectance fill value (NaN for float scenes)
    crs_wkt: str
    transform: tuple[float, ...]  # affine a..f
    aux: tuple[str, ...] = ()  # extra (y, x) arrays, e.g. ``qa``, ``scl``
    label_classes: tuple[str, ...] | None = None  # of the ``label`` array, if there is one
    label_source: Any = field(default=None, hash=False, compare=False)  # what it was made from
    attrs: Mapping[str, Any] = field(default_factory=dict, hash=False, compare=False)  # group


def read_scene(store: Store, key: str, check: bool | tuple[str, ...] = True) -> SceneInfo:
    """The metadata of the scene Zarr at ``key``: shape, grid, band names, radiometry,
    georeferencing, auxiliary arrays, label classes and group attributes. A missing
    scene is a :class:`NotFoundError`; a damaged one (see :func:`verify`, unless
    ``check`` is False; a tuple names arrays it leaves aside) a CorruptObjectError."""
    import zarr

    from .errors import NotFoundError

    group = array_meta(store, key)
    refl = array_meta(store, f"{key}/{REFLECTANCE}") if group is not None else None
    if group is None or refl is None:
        raise NotFoundError(f"no scene Zarr at {store.url(key)}")
    if check is not False:
        verify(store, key, () if check is True else check)
    attrs = dict(group.get("attributes", {}))
    enc = refl.get("attributes", {})
    fill = refl.get("fill_value")
    band = zarr.open_array(store.zarr_store(f"{key}/band", read_only=True), mode="r",
                           zarr_format=3)
    crs_wkt, transform = read_georef(store, key)
    known = {REFLECTANCE, LABEL, HISTOGRAM, STATS, "x", "y", "band", "spatial_ref"}
    names = store.list_dirs(key)
    aux = tuple(n for n in names if n not in known and not n.startswith(".")
                and store.exists(f"{key}/{n}/zarr.json"))
    label = array_meta(store, f"{key}/{LABEL}") if LABEL in names else None
    label_attrs = (label or {}).get("attributes", {})
    nb, h, w = refl["shape"]
    return SceneInfo(
        key=key, shape=(int(nb), int(h), int(w)),
        grid=grid_of(attrs, refl["shape"]), bands=tuple(str(b) for b in band[:]),
        dtype=str(refl.get("data_type")),
        scale=float(enc.get("scale_factor", 1.0)), offset=float(enc.get("add_offset", 0.0)),
        fill=None if fill is None else float(fill), crs_wkt=crs_wkt, transform=transform,
        aux=aux, label_classes=(None if label is None else
                                tuple(str(c) for c in label_attrs.get("classes", []))),
        label_source=label_attrs.get("source"), attrs=attrs)


def _coords(schema: SceneSchema) -> dict[str, Any]:
    return {"band": np.array(schema.bands, dtype=object),
            **grid_coords(schema.crs_wkt, schema.transform, schema.grid.shape)}


def codecs() -> dict[str, Any]:
    from zarr.codecs import Crc32cCodec, ZstdCodec

    return {"compressors": [ZstdCodec(level=3), Crc32cCodec()]}


def _label_variables(g: ShardGrid, classes: tuple[str, ...] | list[str],
                     source: Mapping[str, Any] | None = None
                     ) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ``label`` and ``label_histogram`` variables of a scene and their encoding
    (the one definition used by :func:`create_scene` and :func:`add_label`)."""
    import dask.array as da
    import xarray as xr

    classes = list(classes)
    k, s, c = len(classes), g.shard, g.chunk
    ys, xs = g.dask_chunks()
    n_inner = g.inner_per_shard
    ny, nx = g.n_shards
    attrs: dict[str, Any] = {
        "grid_mapping": "spatial_ref", "classes": classes, "nodata": LABEL_NODATA,
        "flag_values": list(range(k)),
        "flag_meanings": " ".join(n.replace(" ", "_") for n in classes)}
    if source is not None:
        attrs["source"] = json.loads(json.dumps(dict(source)))
    variables = {
        LABEL: xr.DataArray(da.full(g.shape, LABEL_NODATA, dtype="uint8", chunks=(ys, xs)),
                            dims=("y", "x"), attrs=attrs),
        HISTOGRAM: xr.DataArray(
            da.zeros((ny, nx, n_inner, n_inner, k), dtype="uint32",
                     chunks=(1, 1, n_inner, n_inner, k)),
            dims=("shard_y", "shard_x", "inner_y", "inner_x", "class"),
            attrs={"classes": classes, "chunk": c,
                   "description": "pixel count per class in each inner chunk of each shard"},
        ),
    }
    encoding = {
        LABEL: {"chunks": (c, c), "shards": (s, s), "fill_value": LABEL_NODATA, **codecs()},
        HISTOGRAM: {"chunks": (1, 1, n_inner, n_inner, k), "fill_value": 0, **codecs()},
    }
    return variables, encoding


def create_scene(store: Store, key: str, schema: SceneSchema) -> None:
    """Write the scene skeleton (metadata and coordinates, no pixel shards).

    Any previous content under ``key`` is removed first.
    """
    import dask.array as da
    import xarray as xr

    g = schema.grid
    nb, s, c = len(schema.bands), g.shard, g.chunk
    ys, xs = g.dask_chunks()
    fill = schema.nodata
    if fill is None:  # always a _FillValue, so the CF scale never meets integers without one
        fill = float("nan") if np.dtype(schema.dtype).kind == "f" else 0
    variables: dict[str, Any] = {
        REFLECTANCE: xr.DataArray(
            da.zeros((nb, *g.shape), dtype=schema.dtype, chunks=((nb,), ys, xs)),
            dims=("band", "y", "x"),
            attrs={"grid_mapping": "spatial_ref", "long_name": "reflectance"},
        )
    }
    encoding: dict[str, Any] = {
        REFLECTANCE: {
            "chunks": (nb, c, c), "shards": (nb, s, s), "dtype": schema.dtype,
            "scale_factor": schema.scale, "add_offset": schema.offset,
            "_FillValue": fill, **codecs(),
        }
    }
    for name, dtype in schema.aux:
        variables[name] = xr.DataArray(
            da.zeros(g.shape, dtype=dtype, chunks=(ys, xs)), dims=("y", "x"),
            attrs={"grid_mapping": "spatial_ref"},
        )
        encoding[name] = {"chunks": (c, c), "shards": (s, s), "fill_value": 0, **codecs()}
    if schema.label_classes is not None:
        label_vars, label_enc = _label_variables(g, schema.label_classes, schema.label_source)
        variables.update(label_vars)
        encoding.update(label_enc)
    ny, nx = g.n_shards
    variables[STATS] = xr.DataArray(
        da.zeros((ny, nx, len(STAT_NAMES)), dtype="uint64", chunks=(1, 1, len(STAT_NAMES))),
        dims=("shard_y", "shard_x", "stat"), attrs={"stats": list(STAT_NAMES)},
    )
    encoding[STATS] = {"chunks": (1, 1, len(STAT_NAMES)), "fill_value": 0}
    ds = xr.Dataset(variables, coords=_coords(schema))
    ds.attrs.update({"satchunk": json.loads(json.dumps(dict(schema.attrs))),
                     "shard": s, "chunk": c, "Conventions": "CF-1.8"})
    write_skeleton(store, key, ds, encoding)


def write_skeleton(store: Store, key: str, ds: Any, encoding: dict[str, Any]) -> None:
    """Replace ``key`` with the metadata and coordinates of ``ds`` (no data shards)."""
    import warnings

    store.delete(key)
    with warnings.catch_warnings():
        # zarr lists the fresh prefix and finds the coordinate arrays xarray just wrote
        warnings.filterwarnings("ignore", message="Object at .* is not recognized as a "
                                "component of a Zarr hierarchy")
        ds.to_zarr(store.zarr_store(key), mode="w", compute=False, encoding=encoding,
                   zarr_format=3, consolidated=False)


def scene_attrs(store: Store, key: str) -> dict[str, Any] | None:
    """The group attributes of the scene (or mask) Zarr at ``key``, or None if there
    is none."""
    meta = array_meta(store, key)
    return None if meta is None else dict(meta.get("attributes", {}))


def done_shards(store: Store, key: str) -> set[tuple[int, int]]:
    """Shards whose reflectance object exists (the last object a shard task writes)."""
    return shard_objects(store, f"{key}/{REFLECTANCE}/c/0")


def shard_objects(store: Store, prefix: str, ndim: int = 2,
                  listed: Sequence[str] | None = None) -> set[tuple[int, int]]:
    """(sy, sx) of the shard objects ``PREFIX/sy/sx[/...]`` of a sharded array whose
    chunk keys have ``ndim`` parts, the first two being the shard row and column;
    ``listed``: keys just listed under a prefix holding ``prefix`` (else it is listed)."""
    done = set()
    keys = store.list(prefix) if listed is None else [k for k in listed
                                                      if k.startswith(prefix + "/")]
    for k in keys:
        parts = k[len(prefix) + 1:].split("/")
        if len(parts) == ndim and all(p.isdigit() for p in parts):
            done.add((int(parts[0]), int(parts[1])))
    return done


def write_shard(store: Store, key: str, schema: SceneSchema, sy: int, sx: int,
                reflectance: np.ndarray, aux: Mapping[str, np.ndarray] | None = None,
                label: np.ndarray | None = None, stats: tuple[int, int] = (0, 0)) -> None:
    """Write every array of shard (sy, sx) as whole-shard objects, reflectance last.

    ``stats`` are the shard's (valid pixels, cloudy pixels).
    """
    import zarr

    g = schema.grid
    r0, c0, h, w = g.window(sy, sx)
    expect = (len(schema.bands), h, w)
    if reflectance.shape != expect:
        raise ValueError(f"shard {sy},{sx}: reflectance shape {reflectance.shape} != {expect}")
    group = zarr.open_group(store=store.zarr_store(key), mode="r+", zarr_format=3)

    def arr(name: str) -> Any:
        return group[name].with_config({"write_empty_chunks": True})

    for name, block in (aux or {}).items():
        arr(name)[r0:r0 + h, c0:c0 + w] = block
    if label is not None:
        _write_label(arr, g, sy, sx, label, len(schema.label_classes or ()))
    arr(STATS)[sy, sx] = np.asarray(stats, dtype="uint64")
    arr(REFLECTANCE)[:, r0:r0 + h, c0:c0 + w] = reflectance


def _write_label(arr: Callable[[str], Any], g: ShardGrid, sy: int, sx: int,
                 label: np.ndarray, n_classes: int) -> None:
    """Write the label block of shard (sy, sx), then its slot of the histogram."""
    r0, c0, h, w = g.window(sy, sx)
    if label.shape != (h, w):
        raise ValueError(f"shard {sy},{sx}: label shape {label.shape} != {(h, w)}")
    arr(LABEL)[r0:r0 + h, c0:c0 + w] = label
    hist = chunk_histogram(label, g.chunk, g.inner_per_shard, n_classes)
    arr(HISTOGRAM)[sy:sy + 1, sx:sx + 1] = hist[None, None]


def add_label(store: Store, key: str, classes: Sequence[str],
              source: Mapping[str, Any]) -> None:
    """(Re)create empty ``label`` and ``label_histogram`` arrays in the existing scene
    Zarr at ``key``: the encoding and attributes of :func:`create_scene`, plus
    ``source`` (what the label was made from) in the label's attributes.

    Only those two arrays are touched; any previous label is removed first. Fill
    the shards with :func:`write_label_shard`.
    """
    import tempfile

    import xarray as xr

    classes = tuple(str(c) for c in classes)
    if not 0 < len(classes) < LABEL_NODATA:
        raise ValueError(f"a label needs 1 to {LABEL_NODATA - 1} classes, got {len(classes)}")
    g = read_scene(store, key, check=LABEL_ARRAYS).grid
    variables, encoding = _label_variables(g, classes, source)
    # the same xarray encoding as create_scene, rendered into a scratch folder; only the
    # two arrays' metadata documents are copied into the scene
    ds = xr.Dataset(variables, coords={"spatial_ref": xr.DataArray(np.int64(0))})
    with tempfile.TemporaryDirectory(prefix="satchunk-label-") as tmp:
        ds.to_zarr(tmp, mode="w", compute=False, encoding=encoding, zarr_format=3,
                   consolidated=False)
        docs = {name: (Path(tmp) / name / "zarr.json").read_bytes()
                for name in (LABEL, HISTOGRAM)}
    for name in (LABEL, HISTOGRAM):
        store.delete(f"{key}/{name}")
    for name in (HISTOGRAM, LABEL):
        store.write_bytes(f"{key}/{name}/zarr.json", docs[name])


def done_label_shards(store: Store, key: str) -> set[tuple[int, int]]:
    """Shards whose ``label_histogram`` slot exists (the last object a label task writes)."""
    return shard_objects(store, f"{key}/{HISTOGRAM}/c", ndim=5)


def write_label_shard(store: Store, key: str, sy: int, sx: int, label: np.ndarray) -> None:
    """Write shard (sy, sx) of the scene's ``label`` (uint8, 255 = nodata) and its
    ``label_histogram`` slot, as whole-shard objects (histogram last)."""
    import zarr

    group = zarr.open_group(store=store.zarr_store(key), mode="r+", zarr_format=3)
    attrs = group.attrs.asdict()
    lab = group[LABEL]
    h, w = lab.shape
    g = ShardGrid(h, w, int(attrs.get("shard", 2048)), int(attrs.get("chunk", 256)))
    n_classes = group[HISTOGRAM].shape[-1]
    label = np.asarray(label)
    if label.dtype != np.uint8:
        raise ValueError(f"shard {sy},{sx}: label dtype {label.dtype} is not uint8")

    def arr(name: str) -> Any:
        return group[name].with_config({"write_empty_chunks": True})

    _write_label(arr, g, sy, sx, label, n_classes)


def shard_stats(store: Store, key: str) -> dict[str, int]:
    """Sum of every shard's statistics (valid and cloudy pixels)."""
    import zarr

    group = zarr.open_group(store=store.zarr_store(key, read_only=True), mode="r",
                            zarr_format=3)
    totals = np.asarray(group[STATS][:], dtype=np.uint64).sum(axis=(0, 1))
    return {name: int(v) for name, v in zip(STAT_NAMES, totals, strict=True)}


def label_counts(store: Store, key: str) -> np.ndarray:
    """Labelled pixels per class id of the scene's ``label``, from its histogram."""
    import zarr

    group = zarr.open_group(store=store.zarr_store(key, read_only=True), mode="r",
                            zarr_format=3)
    return np.asarray(group[HISTOGRAM][:], dtype=np.uint64).sum(axis=(0, 1, 2, 3))


def open_scene(store: Store, key: str, **kwargs: Any) -> Any:
    """Open a scene (or mask) Zarr lazily as an ``xarray.Dataset`` with Dask chunks =
    shards, once its objects are checked against its manifest (:func:`verify`)."""
    import xarray as xr

    attrs = scene_attrs(store, key)
    if attrs is None:
        from .errors import NotFoundError

        raise NotFoundError(f"no scene Zarr at {store.url(key)}")
    verify(store, key)
    s = int(attrs.get("shard", 2048))
    kwargs.setdefault("chunks", {"y": s, "x": s})
    return xr.open_zarr(store.zarr_store(key, read_only=True), consolidated=False,
                        zarr_format=3, **kwargs)
