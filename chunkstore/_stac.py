"""The static STAC catalog in the store: build, write (item last = commit), read.

Layout: ``stac/catalog.json``, ``stac/<collection>/collection.json``,
``stac/<collection>/<item>/<item>.json``. Items are discovered by listing, so a
reader never depends on a collection's links being up to date.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import pystac

from ._ids import validate_id
from ._layout import CATALOG_KEY, collection_key, item_key
from ._manifest import delete_manifest
from ._scene import SceneSchema
from ._store import Store
from .errors import CorruptObjectError, InputError, NotFoundError

ZARR_MEDIA_TYPE = "application/vnd+zarr"


def footprint_wgs84(crs_wkt: str, transform: Sequence[float], shape: tuple[int, int],
                    densify: int = 21, pad: float = 1e-6
                    ) -> tuple[dict[str, Any], list[float]]:
    """(GeoJSON geometry, bbox) of the grid's outline in WGS84, edges densified.

    A footprint that crosses the antimeridian is cut there into a MultiPolygon and its
    bbox has west > east (RFC 7946, STAC); one that goes round a pole is the lat/lon box
    from its far edge to the pole. The bbox is padded outward (1e-6 deg, about
    0.1 m) so the curved true edges between densified vertices stay inside. A grid
    whose outline does not map to longitudes and latitudes (metres under a CRS in
    degrees: a wrong CRS tag) is an :class:`InputError`.
    """
    from pyproj import CRS, Transformer

    a, b, c, d, e, f = transform
    h, w = shape
    crs = CRS.from_wkt(crs_wkt)
    t = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    ring_px: list[tuple[float, float]] = []
    for (c0, r0), (c1, r1) in (((0, 0), (w, 0)), ((w, 0), (w, h)), ((w, h), (0, h)),
                               ((0, h), (0, 0))):
        for i in range(densify):
            s = i / densify
            ring_px.append((c0 + (c1 - c0) * s, r0 + (r1 - r0) * s))
    xs = [c + a * col + b * row for col, row in ring_px]
    ys = [f + d * col + e * row for col, row in ring_px]
    lon, lat = t.transform(xs, ys)
    if not all(math.isfinite(v) and -540 <= v <= 540 for v in lon) or not all(
            math.isfinite(v) and -90 <= v <= 90 for v in lat):
        shown = ", ".join(f"{v:.6g}" for v in (min(xs), min(ys), max(xs), max(ys)))
        raise InputError(f"its outline ({shown}) is not on Earth in its CRS "
                         f"{crs.to_string()}: the CRS tag does not fit the coordinates (metres "
                         "tagged as degrees?); set the right one (gdal_edit.py -a_srs EPSG:...)")
    lon = [v - 360 if v > 180 else v + 360 if v < -180 else v for v in lon]  # 180.5 E: -179.5
    steps = [lon[i] - lon[i - 1] for i in range(len(lon))]  # the closing step included
    winding = sum(d - 360 if d > 180 else d + 360 if d < -180 else d for d in steps)
    if abs(winding) > 180:  # the outline goes round a pole
        north = sum(lat) > 0
        bbox = _clamp([-180.0, min(lat) - pad if north else -90.0, 180.0,
                       90.0 if north else max(lat) + pad])
        return _box(bbox), bbox
    if not any(abs(d) > 180 for d in steps):
        coords = [[round(x, 9), round(y, 9)] for x, y in zip(lon, lat, strict=True)]
        coords.append(coords[0])
        bbox = [min(lon) - pad, min(lat) - pad, max(lon) + pad, max(lat) + pad]
        return {"type": "Polygon", "coordinates": [coords]}, _clamp(bbox)
    return _cut_at_antimeridian(lon, lat, pad)


def _clamp(bbox: list[float]) -> list[float]:
    w, s, e, n = bbox
    return [round(max(w, -180.0), 7), round(max(s, -90.0), 7), round(min(e, 180.0), 7),
            round(min(n, 90.0), 7)]


def _box(bbox: list[float]) -> dict[str, Any]:
    w, s, e, n = bbox
    return {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]}


def _cut_at_antimeridian(lon: Sequence[float], lat: Sequence[float], pad: float
                         ) -> tuple[dict[str, Any], list[float]]:
    """A ring that crosses 180 deg as a MultiPolygon of its east and west parts."""
    from shapely.geometry import Polygon, box
    from shapely.ops import orient

    unwrapped = Polygon([(x % 360.0, y) for x, y in zip(lon, lat, strict=True)])
    east = unwrapped.intersection(box(0, -90, 180, 90))
    west = unwrapped.intersection(box(180, -90, 540, 90))
    parts = []
    for part, shift in ((east, 0.0), (west, -360.0)):
        for poly in getattr(part, "geoms", [part]):
            if poly.geom_type == "Polygon" and poly.area > 0:
                ring = [[round(x + shift, 9), round(y, 9)] for x, y in
                        orient(poly).exterior.coords]
                parts.append([ring])
    if east.area == 0 or west.area == 0:  # touches 180 without crossing it
        whole = east if west.area == 0 else west
        shift = 0.0 if west.area == 0 else -360.0
        w, s, e, n = whole.bounds
        return ({"type": "Polygon", "coordinates": parts[0]},
                _clamp([w + shift - pad, s - pad, e + shift + pad, n + pad]))
    w = max(east.bounds[0] - pad, -180.0)
    e = min(west.bounds[2] - 360 + pad, 180.0)
    bbox = [w, max(min(lat) - pad, -90.0), e, min(max(lat) + pad, 90.0)]
    return {"type": "MultiPolygon", "coordinates": parts}, [round(v, 7) for v in bbox]


def scene_item(
    schema: SceneSchema, item_id: str, collection: str, zarr_href: str,
    acquired: datetime, band_meta: Sequence[dict[str, Any]],
    properties: dict[str, Any] | None = None,
) -> pystac.Item:
    """A scene item with eo, proj and raster extensions and a Zarr asset."""
    from pyproj import CRS
    from pystac.extensions.eo import Band, EOExtension
    from pystac.extensions.projection import ProjectionExtension
    from pystac.extensions.raster import RasterBand, RasterExtension

    geometry, bbox = footprint_wgs84(schema.crs_wkt, schema.transform, schema.grid.shape)
    item = pystac.Item(
        id=validate_id(item_id, "item id"), geometry=geometry, bbox=bbox,
        datetime=acquired, properties=dict(properties or {}), collection=collection,
    )
    a, b, c, d, e, f = schema.transform
    h, w = schema.grid.shape
    xs = [c, c + a * w + b * h]
    ys = [f, f + d * w + e * h]
    proj = ProjectionExtension.ext(item, add_if_missing=True)
    crs = CRS.from_wkt(schema.crs_wkt)
    epsg = crs.to_epsg()
    if epsg:
        proj.code = f"EPSG:{epsg}"
    else:
        proj.wkt2 = crs.to_wkt()  # WKT2_2019, whatever WKT the Zarr holds
    proj.shape = [h, w]
    proj.transform = [a, b, c, d, e, f]
    proj.bbox = [min(xs), min(ys), max(xs), max(ys)]

    eo_bands = [Band.create(name=m["name"], common_name=m.get("common_name"),
                            center_wavelength=m.get("center_wavelength"))
                for m in band_meta]
    raster_bands = [RasterBand.create(
        data_type=schema.dtype, scale=schema.scale, offset=schema.offset, nodata=schema.nodata,
        spatial_resolution=abs(a)) for _ in band_meta]
    asset = pystac.Asset(href=zarr_href, media_type=ZARR_MEDIA_TYPE, roles=["data"],
                         title="scene Zarr (reflectance" + (", label)" if schema.has_label
                                                             else ")"))
    item.add_asset("zarr", asset)
    EOExtension.ext(asset, add_if_missing=True).bands = eo_bands
    RasterExtension.ext(asset, add_if_missing=True).bands = raster_bands
    EOExtension.ext(item, add_if_missing=True)
    return item


def crs_name(properties: dict[str, Any]) -> str:
    """A short name of an item's CRS: its ``proj:code`` (``EPSG:32633``), else the name in
    its ``proj:wkt2`` or ``proj:projjson`` (a custom CRS; ``custom <projection method>``
    when it has none), else ``-``."""
    from pyproj import CRS
    from pyproj.exceptions import CRSError

    if properties.get("proj:code"):
        return str(properties["proj:code"])
    for key in ("proj:wkt2", "proj:projjson"):
        if properties.get(key):
            try:
                crs = CRS.from_user_input(properties[key])
            except CRSError:
                return "(invalid CRS)"
            crs = crs.source_crs if crs.is_bound else crs  # not its +towgs84 part
            if crs.name and crs.name not in ("unknown", "unnamed"):
                return crs.name
            op = crs.coordinate_operation  # unnamed: say what it is
            return f"custom {op.method_name if op else crs.type_name}"
    return "-"


def _item_dict(item: pystac.Item) -> dict[str, Any]:
    d = item.to_dict(include_self_link=False, transform_hrefs=False)
    d["links"] = [
        {"rel": "root", "href": "../../catalog.json", "type": "application/json"},
        {"rel": "parent", "href": "../collection.json", "type": "application/json"},
        {"rel": "collection", "href": "../collection.json", "type": "application/json"},
        *[link for link in d.get("links", []) if link.get("rel") == "derived_from"],
    ]
    return d


def _document(store: Store, key: str, data: bytes) -> dict[str, Any]:
    """The STAC JSON object read from ``key``; anything else there is damage."""
    try:
        doc = json.loads(data)
    except ValueError:  # not JSON (cut short, altered) or not UTF-8
        doc = None
    if isinstance(doc, dict) and (key == CATALOG_KEY or isinstance(doc.get("id"), str)):
        return doc
    if key == CATALOG_KEY:
        fix = ("delete it: the next ingest, label or predict writes it again, linking every "
               "collection in the store")
    else:
        _, collection, item, _ = key.split("/")
        fix = (f"delete it (`chunkstore.delete_item(store, {collection!r}, {item!r})`, or "
               "remove the object directly) and re-run the job that wrote it (ingest, or "
               "predict for a mask; then label again if it had a label), which commits it "
               "again from the shards in the store")
    raise CorruptObjectError(f"object {store.url(key)} is not a STAC JSON document (cut "
                             f"short or damaged): {fix}")


def _ensure_catalog(store: Store, collection: str) -> None:
    if store.exists(CATALOG_KEY):
        cat = _document(store, CATALOG_KEY, store.read_bytes(CATALOG_KEY))
        cat.setdefault("links", [])
        names = [collection]
    else:
        cat = pystac.Catalog(id="satchunk", description="satchunk scenes, masks and models")
        cat = cat.to_dict(include_self_link=False, transform_hrefs=False)
        cat["links"] = [{"rel": "root", "href": "./catalog.json", "type": "application/json"}]
        names = sorted({*list_collections(store), collection})  # rewritten: link them all
    added = False
    for name in names:
        href = f"./{name}/collection.json"
        if not any(link.get("href") == href for link in cat["links"]):
            cat["links"].append({"rel": "child", "href": href, "type": "application/json",
                                 "title": name})
            added = True
    if added:
        store.write_bytes(CATALOG_KEY, json.dumps(cat, indent=2).encode())


def _collection_dict(collection: str, items: list[dict[str, Any]]) -> dict:
    bboxes = [i["bbox"] for i in items]
    times = sorted(i["properties"].get("datetime") for i in items
                   if i["properties"].get("datetime"))
    bbox = ([min(b[0] for b in bboxes), min(b[1] for b in bboxes),
             max(b[2] for b in bboxes), max(b[3] for b in bboxes)] if bboxes
            else [-180.0, -90.0, 180.0, 90.0])
    if len(bboxes) > 1 and any(b[0] > b[2] for b in bboxes):  # one crosses 180 deg
        bbox[0], bbox[2] = -180.0, 180.0
    col = pystac.Collection(
        id=collection, description=f"satchunk collection {collection}",
        extent=pystac.Extent(
            pystac.SpatialExtent([bbox]),
            pystac.TemporalExtent([[pystac.utils.str_to_datetime(times[0]) if times else None,
                                    pystac.utils.str_to_datetime(times[-1]) if times else None]]),
        ),
        license="other",
    )
    d = col.to_dict(include_self_link=False, transform_hrefs=False)
    d["links"] = [
        {"rel": "root", "href": "../catalog.json", "type": "application/json"},
        {"rel": "parent", "href": "../catalog.json", "type": "application/json"},
        *[{"rel": "item", "href": f"./{i['id']}/{i['id']}.json", "type": "application/geo+json"}
          for i in items],
    ]
    return d


def write_item(store: Store, item: pystac.Item, refresh: bool = True) -> str:
    """Write ``item`` into its collection. The item object is the commit marker.

    Returns the item's key. The catalog's link to the collection is made first and the
    collection's extent and item links are refreshed from a listing after, unless
    ``refresh`` is False: a job committing many items to a collection that is already
    in the catalog (masks of its scenes) refreshes once at its end
    (:func:`refresh_collection`; each refresh reads every item of the collection).
    """
    collection = validate_id(item.collection_id or "", "collection")
    validate_id(item.id, "item id")
    if refresh:
        _ensure_catalog(store, collection)
        if not store.exists(collection_key(collection)):  # listed from now on
            store.write_bytes(collection_key(collection),
                              json.dumps(_collection_dict(collection, []), indent=2).encode())
    key = item_key(collection, item.id)
    _check_kind(store, key, item)
    store.write_bytes(key, json.dumps(_item_dict(item), indent=2).encode())
    if refresh:
        refresh_collection(store, collection)
    return key


def _check_kind(store: Store, key: str, item: pystac.Item) -> None:
    """Refuse to replace an item of another kind (a scene by a mask, or back)."""
    kind = item.properties.get("satchunk:kind", "scene")
    try:
        there = json.loads(store.read_bytes(key)).get("properties", {})
    except (NotFoundError, ValueError, AttributeError):
        return  # nothing there, or damage that the new item replaces
    if there.get("satchunk:kind", "scene") != kind:
        raise InputError(f"item {store.url(key)} is a {there.get('satchunk:kind', 'scene')}, "
                         f"not a {kind}: its id is taken; nothing was replaced (pick "
                         "another id)")


def refresh_collection(store: Store, collection: str) -> None:
    """The extent and item links of ``collection`` (one in the catalog), from a listing."""
    items = list_items(store, collection)
    store.write_bytes(collection_key(collection),
                      json.dumps(_collection_dict(collection, items), indent=2).encode())


def list_collections(store: Store) -> list[str]:
    return [c for c in store.list_dirs("stac") if store.exists(collection_key(c))]


def list_items(store: Store, collection: str) -> list[dict[str, Any]]:
    """Every committed item of ``collection`` (as STAC dicts), sorted by id."""
    validate_id(collection, "collection")
    keys = [k for k in store.list(f"stac/{collection}")
            if len(p := k.split("/")) == 4 and p[3] == f"{p[2]}.json"]
    found = store.read_many(keys)  # one deleted since the listing is left out
    return sorted((_document(store, k, found[k]) for k in keys if k in found),
                  key=lambda d: d["id"])


def read_item(store: Store, collection: str, item: str) -> dict[str, Any]:
    key = item_key(collection, item)
    if not store.exists(key):
        raise NotFoundError(
            f"item {item!r} is not in collection {collection!r} of {store.describe()}: "
            "see `satchunk catalog ls`"
        )
    return _document(store, key, store.read_bytes(key))


def find_item(store: Store, item: str, collection: str | None = None) -> dict[str, Any]:
    """Read an item by id, searching every collection when none is given."""
    if collection:
        return read_item(store, collection, item)
    validate_id(item, "item id")
    hits = [c for c in list_collections(store) if store.exists(item_key(c, item))]
    if not hits:
        raise NotFoundError(
            f"item {item!r} is not in {store.describe()}: see `satchunk catalog ls`"
        )
    if len(hits) > 1:
        raise NotFoundError(f"item {item!r} is in several collections {hits}: pass --collection")
    return read_item(store, hits[0], item)


def delete_item(store: Store, collection: str, item: str) -> None:
    """Remove an item's STAC JSON (its commit marker) so it no longer counts as
    complete, then its Zarr's manifest."""
    store.delete(item_key(collection, item))
    delete_manifest(store, collection, item)
