"""Credentials never leave the environment: with every logger at DEBUG (botocore's
signed request headers included) the CLI's and its workers' logs, the job records,
the STAC catalog and error messages hold no key, and STAC hrefs are never presigned."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys

import pytest

from chunkstore import Credentials, open_store
from satchunk.logs import configure_logging, log_level
from satchunk.redact import RedactingFilter, redact, redact_record, secrets_of

L8_ITEM = "small_full_data_cloudy"


def _cli(args, env, timeout=600):
    return subprocess.run([sys.executable, "-m", "satchunk", *args], env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_debug_logs_records_and_catalog_hold_no_credential(s3_env, landsat_dir):
    env = {**os.environ, **s3_env, "SATCHUNK_LOG_LEVEL": "DEBUG"}
    key, secret = s3_env["AWS_ACCESS_KEY_ID"], s3_env["AWS_SECRET_ACCESS_KEY"]
    ingest = _cli(["ingest", str(landsat_dir), "--collection", "l8", "--shard", "256",
                   "--chunk", "128", "--json"], env)
    assert ingest.returncode == 0, ingest.stderr[-2000:]
    predict = _cli(["predict", L8_ITEM, "--collection", "l8", "--model", "ukis-csmask:4b",
                    "--json"], env)
    assert predict.returncode == 0, predict.stderr[-2000:]
    wrong = _cli(["catalog", "ls"], {**env, "AWS_SECRET_ACCESS_KEY": secret[::-1]})
    assert wrong.returncode != 0
    logs = ingest.stderr + predict.stderr + wrong.stderr
    # DEBUG really was on, in the client and in the workers, botocore included, and
    # the signed requests were logged with their credential blanked
    worker = [x for x in logs.splitlines() if "[Dask Worker process" in x]
    assert any(x.startswith("DEBUG botocore") for x in worker), logs[-3000:]
    assert any("Credential=***" in x for x in worker)
    assert any(x.startswith("DEBUG botocore") and "[MainProcess]" in x
               for x in logs.splitlines())  # the client's own requests too
    for s in (key, secret, secret[::-1]):
        assert s not in logs
        assert s not in ingest.stdout + predict.stdout + wrong.stdout
    assert "access denied" in wrong.stderr.splitlines()[-1]

    store = open_store(env=s3_env)
    objects = [k for k in store.list("") if "/c/" not in k]  # all but array chunks
    runs = [k for k in objects if k.startswith("runs/")]
    items = [k for k in objects if k.startswith("stac/")]
    assert len(runs) >= 2 and len(items) >= 3, objects
    for k in objects:
        text = store.read_bytes(k).decode("utf-8", "replace")
        assert key not in text and secret not in text, k
    for k in items:
        doc = json.loads(store.read_bytes(k))
        for link in [*doc.get("links", []), *doc.get("assets", {}).values()]:
            href = link["href"]
            assert "?" not in href and "X-Amz-" not in href and "Signature" not in href, href


def test_redaction_of_signed_headers_and_presigned_urls():
    header = ("{'Authorization': b'AWS4-HMAC-SHA256 Credential=AKIAEXAMPLE123/20261201/"
              "us-east-1/s3/aws4_request, SignedHeaders=host;x-amz-date, Signature=0a1b2c3d',"
              " 'X-Amz-Security-Token': b'FwoGZXIvYXdzEXAMPLETOKEN'}")
    clean = redact(header)
    for s in ("AKIAEXAMPLE123", "0a1b2c3d", "FwoGZXIvYXdzEXAMPLETOKEN"):
        assert s not in clean
    assert "Credential=***/20261201" in clean and "SignedHeaders=host" in clean
    url = ("http://127.0.0.1:9000/b/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential="
           "AKIAEXAMPLE123%2F20261201&X-Amz-Signature=deadbeef&AWSAccessKeyId=AKIAOLD")
    assert not any(s in redact(url) for s in ("AKIAEXAMPLE123", "deadbeef", "AKIAOLD"))
    assert redact("secret is hunter2-long", ["hunter2-long"]) == "secret is ***"


def test_a_job_record_is_blanked_by_the_same_redact():
    record = {"run_id": "r-1", "seconds": 1.5, "config": {"uri": "s3://b/p?k=hunter2-long",
                                                          "args": ("x", "hunter2-long")},
              "error": "403 Credential=AKIAEXAMPLE123/2026", "ok": None}
    assert redact_record(record, secrets_of(Credentials("AKIAKEYID", "hunter2-long"))) == {
        "run_id": "r-1", "seconds": 1.5, "config": {"uri": "s3://b/p?k=***",
                                                    "args": ["x", "***"]},
        "error": "403 Credential=***/2026", "ok": None}


def test_every_root_handler_is_filtered_and_the_level_is_checked(monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "very-secret-value-42")
    buf = io.StringIO()
    mine = logging.StreamHandler(buf)  # a handler a user added before satchunk's set-up
    root = logging.getLogger()
    old = root.level
    root.addHandler(mine)
    try:
        configure_logging(logging.DEBUG)
        assert any(isinstance(f, RedactingFilter) for f in mine.filters)
        logging.getLogger("botocore.test").debug("env %s", {"k": "very-secret-value-42"})
        try:
            raise RuntimeError("failed with very-secret-value-42")
        except RuntimeError:
            logging.getLogger("x").exception("boom")
    finally:
        root.removeHandler(mine)
        configure_logging(old or logging.INFO)
    assert "very-secret-value-42" not in buf.getvalue() and "***" in buf.getvalue()
    assert log_level({"SATCHUNK_LOG_LEVEL": "debug"}) == logging.DEBUG
    with pytest.raises(Exception, match="SATCHUNK_LOG_LEVEL"):
        log_level({"SATCHUNK_LOG_LEVEL": "LOUD"})


def test_scheduler_and_dashboards_listen_on_loopback_only(client, s3_store):
    import psutil

    from dashboards import start_dashboard

    def listening(pid):
        return {(c.laddr.ip, c.laddr.port) for c in psutil.Process(pid).net_connections("tcp")
                if c.status == psutil.CONN_LISTEN}

    assert client.scheduler.address.startswith("tcp://127.0.0.1:")
    assert client.dashboard_link.startswith("http://127.0.0.1:")
    # the local cluster's scheduler (with the Dask dashboard) runs in this process
    scheduler_pid = client.run_on_scheduler(os.getpid)
    assert scheduler_pid == os.getpid()
    dash = start_dashboard(s3_store, port=0)
    try:
        port = int(dash.url.rstrip("/").rsplit(":", 1)[1])
        socks = listening(scheduler_pid)
        assert port in {p for _, p in socks}
        assert {ip for ip, _ in socks} == {"127.0.0.1"}, socks
    finally:
        dash.stop()
    for pid in client.run(os.getpid).values():  # the workers
        assert {ip for ip, _ in listening(pid)} <= {"127.0.0.1"}


def test_dask_tornado_and_bokeh_loggers_stay_quiet_below_debug():
    """Below DEBUG a local cluster's own loggers print nothing under CRITICAL: the CLI
    says what failed in one line (a Ctrl-C inside a Dask call made distributed log a
    NameError traceback through ``tornado.application``, set to ERROR by distributed)."""
    import logging

    from satchunk.cluster import dask_client

    with dask_client(workers=1, quiet=True):
        levels = {n: lg.level for n, lg in logging.root.manager.loggerDict.items()
                  if isinstance(lg, logging.Logger) and lg.level != logging.NOTSET
                  and n.split(".")[0] in ("distributed", "bokeh", "tornado")}
    assert "tornado.application" in levels and "distributed.client" in levels
    assert set(levels.values()) == {logging.CRITICAL}, levels

