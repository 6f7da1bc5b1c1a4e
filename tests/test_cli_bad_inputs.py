"""Bad inputs through the CLI: one-line error naming the file and the fix, exit 2,
nothing in the catalog."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from joboutput import error_lines

from satchunk.cli import main


@pytest.fixture
def cli_env(monkeypatch, s3_env):
    for k, v in s3_env.items():
        monkeypatch.setenv(k, v)
    return s3_env


@pytest.fixture(scope="module")
def good_tif(tmp_path_factory, landsat_dir):
    """A real 2-band COG cut from the Landsat crop."""
    path = tmp_path_factory.mktemp("good") / "l8_stack.tif"
    with rasterio.open(landsat_dir / "l8_B4.tif") as r, \
            rasterio.open(landsat_dir / "l8_B5.tif") as n:
        data = np.stack([r.read(1), n.read(1)])
        prof = r.profile | {"driver": "COG", "count": 2, "compress": "NONE", "blocksize": 128}
    with rasterio.open(path, "w", **prof) as dst:
        dst.write(data)
    return path


def run_bad(capsys, argv):
    code = main(argv)
    return code, error_lines(capsys.readouterr().err)


def assert_refused(capsys, store_env, argv, *needles):
    from chunkstore import open_store

    code, lines = run_bad(capsys, argv)
    assert code == 2, lines
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: ")
    for n in needles:
        assert n in lines[0], lines[0]
    store = open_store(env=store_env)
    assert store.list("stac") == [] and store.list("zarr") == []  # nothing written
    assert store.list("locks") == []
    assert store_env["AWS_SECRET_ACCESS_KEY"] not in lines[0]
    return lines[0]


def test_missing_file(capsys, cli_env, tmp_path):
    assert_refused(capsys, cli_env, ["ingest", str(tmp_path / "nope.tif"), "--collection", "c"],
                   "nope.tif", "no such file")


def test_zero_byte_file(capsys, cli_env, tmp_path):
    f = tmp_path / "empty.tif"
    f.write_bytes(b"")
    assert_refused(capsys, cli_env, ["ingest", str(f), "--collection", "c"], "empty.tif",
                   "0 bytes")


def test_truncated_file_that_opens_fine(capsys, cli_env, tmp_path, good_tif):
    f = tmp_path / "cut.tif"
    data = good_tif.read_bytes()
    f.write_bytes(data[: int(len(data) * 0.6)])
    with rasterio.open(f) as ds:  # the header is intact: it opens fine
        assert ds.count == 2
    assert_refused(capsys, cli_env, ["ingest", str(f), "--collection", "c"], "cut.tif",
                   "truncated or corrupt")


def test_unreadable_jp2(capsys, cli_env, tmp_path, s2_dir):
    folder = tmp_path / "granule"
    folder.mkdir()
    for band in ("B02", "B03"):
        with rasterio.open(s2_dir / f"s2_{band}.jp2") as src:
            prof = {k: v for k, v in src.profile.items()
                    if k not in ("blockxsize", "blockysize", "tiled", "interleave")}
            with rasterio.open(folder / f"T18SVG_20210704T155819_{band}.jp2", "w",
                               **(prof | {"driver": "JP2OpenJPEG"})) as d:
                d.write(src.read())
    bad = folder / "T18SVG_20210704T155819_B03.jp2"
    raw = bytearray(bad.read_bytes())
    raw[len(raw) // 3:] = b"\x00" * (len(raw) - len(raw) // 3)
    bad.write_bytes(bytes(raw))
    assert_refused(capsys, cli_env, ["ingest", str(folder), "--collection", "c"], "_B03.jp2")


def test_bands_with_different_crs(capsys, cli_env, tmp_path, s2_dir):
    for band, epsg in (("B02", 32618), ("B03", 32617)):
        with rasterio.open(s2_dir / f"s2_{band}.jp2") as src:
            prof = src.profile | {"crs": f"EPSG:{epsg}"}
            with rasterio.open(tmp_path / f"T18SVG_20210704T155819_{band}.tif", "w",
                               **prof) as d:
                d.write(src.read())
    files = sorted(str(p) for p in tmp_path.glob("*.tif"))
    assert_refused(capsys, cli_env, ["ingest", *files, "--collection", "c"], "_B03.tif",
                   "CRS", "reproject")


def test_band_count_does_not_match_bands(capsys, cli_env, good_tif):
    assert_refused(capsys, cli_env, ["ingest", str(good_tif), "--collection", "c",
                                     "--bands", "red,nir,swir16"],
                   "l8_stack.tif", "has 2 bands", "--bands names 3")


def test_missing_label_field(capsys, cli_env, tmp_path, good_tif):
    labels = tmp_path / "labels.geojson"
    labels.write_text('{"type": "FeatureCollection", "features": [{"type": "Feature", '
                      '"properties": {"kind": "water"}, "geometry": {"type": "Point", '
                      '"coordinates": [-87.4, 30.7]}}]}')
    assert_refused(capsys, cli_env, ["ingest", str(good_tif), "--collection", "c", "--labels",
                                     str(labels), "--label-field", "landcover"],
                   "labels.geojson", "no field 'landcover'", "kind")


@pytest.mark.parametrize("collection", ["../x", "/abs", "%2e%2e", "a\\b", "x" * 200])
def test_invalid_collection_id(capsys, cli_env, good_tif, collection):
    assert_refused(capsys, cli_env, ["ingest", str(good_tif), "--collection", collection],
                   "invalid collection")


def test_file_name_that_is_not_a_valid_item_id(capsys, cli_env, tmp_path, good_tif):
    f = tmp_path / "my scene.tif"
    f.write_bytes(good_tif.read_bytes())
    assert_refused(capsys, cli_env, ["ingest", str(f), "--collection", "c"], "my scene",
                   "rename")


def test_unreachable_store_is_one_line(capsys, cli_env, good_tif, monkeypatch):
    from chunkstore._server import free_port

    code, lines = run_bad(capsys, ["ingest", str(good_tif), "--collection", "c",
                                   "--endpoint-url", f"http://127.0.0.1:{free_port()}"])
    assert code == 2 and len(lines) == 1 and "cannot reach the object store" in lines[0]


@pytest.mark.parametrize("argv, needle", [
    (["catalog", "ls", "--colection", "s2"], "No such option: --colection"),
    (["export"], "Missing argument"),
    (["predict", "-0"], "No such option: -0"),
    (["ingest", "x", "--collection"], "requires an argument"),
])
def test_usage_errors_are_one_line_exit_2(capsys, argv, needle):
    code, err = run_bad(capsys, argv)
    assert code == 2 and len(err) == 1 and needle in err[0] and err[0].startswith("error: ")


def _claim_size(src, dst, width, height):
    """Copy the TIFF ``src`` to ``dst`` with its header claiming width x height pixels."""
    import struct

    b = bytearray(src.read_bytes())
    assert b[:4] == b"II*\x00"
    off = struct.unpack("<I", b[4:8])[0]
    for i in range(struct.unpack("<H", b[off:off + 2])[0]):
        e = off + 2 + 12 * i
        tag = struct.unpack("<H", b[e:e + 2])[0]
        if tag in (256, 257):  # ImageWidth, ImageLength: as LONG, whatever they were
            b[e + 2:e + 4] = struct.pack("<H", 4)
            b[e + 8:e + 12] = struct.pack("<I", width if tag == 256 else height)
    dst.write_bytes(bytes(b))


def test_header_claiming_a_million_by_a_million_pixels(capsys, cli_env, tmp_path, good_tif):
    f = tmp_path / "huge.tif"
    _claim_size(good_tif, f, 10**6, 10**6)
    with rasterio.open(f) as ds:  # it opens, and claims 10^12 pixels
        assert (ds.width, ds.height) == (10**6, 10**6)
    assert_refused(capsys, cli_env, ["ingest", str(f), "--collection", "c"], "huge.tif",
                   "truncated or corrupt")


@pytest.mark.parametrize("kind", ["nodata", "nan"])
def test_scene_without_a_valid_pixel(capsys, cli_env, tmp_path, good_tif, kind):
    f = tmp_path / f"empty_{kind}.tif"
    with rasterio.open(good_tif) as src:
        prof = src.profile | {"driver": "GTiff"}
    if kind == "nodata":
        prof |= {"nodata": 0}
        data = np.zeros((2, prof["height"], prof["width"]), np.uint16)
    else:
        prof |= {"dtype": "float32", "nodata": None}
        data = np.full((2, prof["height"], prof["width"]), np.nan, np.float32)
    with rasterio.open(f, "w", **prof) as dst:
        dst.write(data)
    assert_refused(capsys, cli_env, ["ingest", str(f), "--collection", "c", "--shard", "256",
                                     "--chunk", "128"], f.name, "every pixel is nodata")


@pytest.mark.parametrize("value", ["nan", "inf", "-30", "0"])
def test_resolution_that_is_not_a_positive_number(capsys, cli_env, good_tif, value):
    assert_refused(capsys, cli_env, ["ingest", str(good_tif), "--collection", "c",
                                     f"--resolution={value}"], "--resolution",
                   "positive number")


def test_band_from_another_area_or_resampled_to_another_extent(capsys, cli_env, tmp_path,
                                                               landsat_dir):
    from rasterio.transform import Affine

    name = "LC08_L1TP_015032_20200101_20200113_01_T1"
    for band in ("B2", "B3", "B4", "B5"):
        with rasterio.open(landsat_dir / f"l8_{band}.tif") as src:
            prof, data = src.profile, src.read()
        if band == "B5":  # shifted 3 km east, and at 60 m
            t = prof["transform"]
            prof |= {"transform": Affine(60, 0, t.c + 3000, 0, -60, t.f),
                     "width": prof["width"] // 2, "height": prof["height"] // 2}
            data = data[:, ::2, ::2]
        with rasterio.open(tmp_path / f"{name}_{band}.TIF", "w", **prof) as dst:
            dst.write(data)
    assert_refused(capsys, cli_env, ["ingest", str(tmp_path), "--collection", "c"],
                   f"{name}_B5.TIF", "covers", "one area")


def test_nul_in_an_id(capsys, cli_env, good_tif):
    assert_refused(capsys, cli_env, ["ingest", str(good_tif), "--collection", "a\x00b"],
                   "invalid collection")


@pytest.mark.parametrize("bucket", ["p", "My_Bucket", "-lead", "a" * 64])
def test_store_serve_refuses_a_bucket_name_s3_does_not_allow(capsys, tmp_path, bucket):
    code, lines = run_bad(capsys, ["store", "serve", "--dir", str(tmp_path / "s3"), "--port",
                                   "0", "--bucket", bucket])
    assert code == 2 and len(lines) == 1 and "invalid bucket" in lines[0], lines
    assert "3-63 characters" in lines[0]
    assert not (tmp_path / "s3").exists()  # nothing started, nothing written
