"""``vectorize``: polygons per class from a mask, merged across shard borders.

Dask tasks label one mask shard each (class map, and the probability product when
the mask has it); the client joins pieces that continue across shard borders and
writes GeoParquet (native CRS), GeoPackage (native CRS) or GeoJSON (WGS84, RFC 7946).
Each polygon carries its class, pixel count, area in square metres and the mean
probability of its class (empty when the mask was predicted without probabilities).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from chunkstore import Credentials, InputError, Store

from ._maskref import MaskRef, open_mask_array
from ._outfile import check_output, layer_name, staged
from ._polygons import Pieces, Polygon, merge_pieces, shard_pieces

FORMATS = {".parquet": "parquet", ".geoparquet": "parquet", ".gpkg": "GPKG",
           ".geojson": "GeoJSON", ".json": "GeoJSON"}


def check_vector_path(out: str | Path) -> str:
    """The output format of ``out``, refused before any work when unknown."""
    out = Path(out)
    fmt = FORMATS.get(out.suffix.lower())
    if fmt is None:
        raise InputError(f"{out}: write polygons to .parquet, .gpkg or .geojson")
    check_output(out)
    return fmt


def _shard_task(store: Store, ref: MaskRef, sy: int, sx: int,
                credentials: Credentials) -> Pieces:
    st = store.with_credentials(credentials)
    r0, c0, h, w = window = ref.grid.window(sy, sx)
    cls = open_mask_array(st, ref, "class")[r0:r0 + h, c0:c0 + w]
    prob = None
    if "probability" in ref.products:
        prob = open_mask_array(st, ref, "probability")[:, r0:r0 + h, c0:c0 + w] / 255.0
    return shard_pieces(cls, prob, window, id_base=(sy * ref.grid.n_shards[1] + sx) << 32)


def vectorize_mask(store: Store, client: Any, ref: MaskRef, out: str | Path,
                   progress: bool = True) -> dict[str, Any]:
    from distributed import as_completed
    from tqdm import tqdm

    t0 = time.perf_counter()
    fmt = check_vector_path(out)
    out = Path(out)
    bare = store.without_credentials()
    futures = [client.submit(_shard_task, bare, ref, sy, sx, store.credentials, pure=False)
               for sy, sx in ref.grid.shards()]
    pieces = []
    try:
        with tqdm(total=len(futures), unit="shard", desc=f"vectorize {ref.item}",
                  disable=not progress) as bar:
            for fut in as_completed(futures):
                pieces.append(fut.result())
                bar.update(1)
    except BaseException:
        client.cancel(futures)
        raise
    polygons = merge_pieces(pieces)
    frame = polygon_frame(polygons, ref)
    with staged(out) as partial:
        try:
            if fmt == "parquet":
                frame.to_parquet(partial)
            else:
                if fmt == "GeoJSON":
                    frame = frame.to_crs("EPSG:4326")
                frame.to_file(partial, driver=fmt, engine="pyogrio", layer=layer_name(out),
                              **({"layer_options": {"RFC7946": "YES"}} if fmt == "GeoJSON"
                                 else {}))
        except (ValueError, RuntimeError) as exc:  # pyogrio / pyarrow write errors
            raise InputError(f"{out}: cannot write it ({str(exc).splitlines()[0]})") from None
    counts = frame["class_name"].value_counts().to_dict() if len(frame) else {}
    return {"collection": ref.collection, "item": ref.item, "model_id": ref.model_id,
            "out": str(out), "format": fmt, "polygons": len(frame),
            "per_class": {str(k): int(v) for k, v in counts.items()},
            "mean_probability": "probability" in ref.products,
            "seconds": round(time.perf_counter() - t0, 3)}


def polygon_frame(polygons: list[Polygon], ref: MaskRef) -> Any:
    """A GeoDataFrame in the mask's CRS, largest polygons first."""
    import geopandas as gpd
    import pandas as pd
    import shapely
    from pyproj import CRS

    a, b, c, d, e, f = ref.transform
    crs = CRS.from_wkt(ref.crs_wkt)
    geoms = [shapely.affinity.affine_transform(p.geometry, (a, b, d, e, c, f))
             for p in polygons]
    pixels = np.array([p.pixels for p in polygons], dtype=np.int64)
    if crs.is_projected:
        unit = crs.axis_info[0].unit_conversion_factor
        area = pixels * abs(a * e - b * d) * unit * unit
    else:
        geod = crs.get_geod()
        area = np.array([abs(geod.geometry_area_perimeter(g)[0]) for g in geoms])
    has_prob = "probability" in ref.products
    frame = gpd.GeoDataFrame({
        "class": np.array([p.cls for p in polygons], dtype=np.uint8),
        "class_name": pd.Series([ref.classes[p.cls] if p.cls < len(ref.classes)
                                 else str(p.cls) for p in polygons], dtype="string"),
        "pixels": pixels,
        "area_m2": area.astype(np.float64),
        "mean_probability": np.array([p.mean_probability if has_prob else np.nan
                                      for p in polygons], dtype=np.float64),
        "item": ref.item,
        "model_id": ref.model_id,
    }, geometry=geoms, crs=crs)
    return frame.sort_values(["class", "pixels"], ascending=[True, False],
                             ignore_index=True)
