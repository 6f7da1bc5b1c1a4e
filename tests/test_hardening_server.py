"""The embedded S3 server dies with its parent, and a URL's password is never printed
or stored (issue 22), against the real `satchunk store serve` and SeaweedFS."""

from __future__ import annotations

import io
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from chunkstore import Store, StoreError, open_store
from satchunk.logs import configure_logging
from satchunk.redact import redact, redact_record
from satchunk.signals import _stop_signals

SECRET = "secretpass"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_free(port: int) -> bool:
    """Nothing listens on ``port`` (a bind succeeds; connections in TIME_WAIT allowed)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _gone(proc: psutil.Process) -> bool:
    """Dead: no such process (the same one, not a reused PID), or a zombie (a container's
    PID 1 may never reap an orphan)."""
    try:
        return not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _until(predicate, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


def _serve(tmp_path: Path) -> tuple[subprocess.Popen, psutil.Process | None, int]:
    """`satchunk store serve` on a free loopback port, once it prints its variables;
    with its weed child (None if it did not come up: the caller's finally cleans up)."""
    port = _free_port()
    err = open(tmp_path / "serve.stderr", "wb")  # noqa: SIM115 - the child writes it
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "satchunk", "store", "serve", "--dir", str(tmp_path / "s3"),
             "--host", "127.0.0.1", "--port", str(port), "--bucket", "hardening"],
            stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL)
    finally:
        err.close()
    out = b""
    deadline = time.monotonic() + 120
    assert proc.stdout is not None
    while b"SATCHUNK_STORE=" not in out and time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        ready, _, _ = select.select([proc.stdout], [], [], 0.5)
        if ready:
            out += os.read(proc.stdout.fileno(), 4096)
    weed = [c for c in psutil.Process(proc.pid).children() if c.name() == "weed"] \
        if proc.poll() is None else []
    return proc, (weed[0] if weed else None), port


def _cleanup(proc: subprocess.Popen, weed: psutil.Process | None) -> None:
    """Kill what the test started, by PID (psutil refuses a PID reused since)."""
    if proc.poll() is None:
        proc.kill()
    proc.wait(10)
    if weed is not None and not _gone(weed):
        weed.kill()


def test_sighup_stops_store_serve_and_its_server(tmp_path):
    proc, weed, port = _serve(tmp_path)
    try:
        assert weed is not None, (tmp_path / "serve.stderr").read_text()[-2000:]
        assert not _port_free(port)
        proc.send_signal(signal.SIGHUP)  # the terminal closed
        assert proc.wait(60) == 0  # a clean stop: the graceful stop takes up to 15 s
        assert _until(lambda: _gone(weed), 5)
        assert _until(lambda: _port_free(port), 5)
        assert "Traceback" not in (tmp_path / "serve.stderr").read_text()
    finally:
        _cleanup(proc, weed)


def test_the_server_dies_when_store_serve_is_killed(tmp_path):
    if not sys.platform.startswith("linux"):
        pytest.skip("a parent-death signal is Linux only")
    proc, weed, port = _serve(tmp_path)
    try:
        assert weed is not None, (tmp_path / "serve.stderr").read_text()[-2000:]
        proc.kill()
        proc.wait(10)
        assert _until(lambda: _gone(weed), 10), "weed outlived its killed parent"
        assert _until(lambda: _port_free(port), 10)
    finally:
        _cleanup(proc, weed)


def test_nohup_keeps_sighup_ignored():
    old = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        assert signal.SIGHUP not in _stop_signals()
        signal.signal(signal.SIGHUP, signal.SIG_DFL)
        assert signal.SIGHUP in _stop_signals()
    finally:
        signal.signal(signal.SIGHUP, old)


def _cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "satchunk", *args], env=env,
                          capture_output=True, text=True, timeout=300)


def test_an_endpoint_password_is_never_printed_or_stored(s3_server, s3_env):
    port = s3_server.endpoint_url.rsplit(":", 1)[1]
    bare = f"http://127.0.0.1:{port}"
    with_password = f"http://user:{SECRET}@127.0.0.1:{port}"
    env = {**os.environ, **s3_env, "SATCHUNK_LOG_LEVEL": "DEBUG",
           "AWS_ENDPOINT_URL": with_password}
    by_env = _cli(["catalog", "ls"], env)
    by_flag = _cli(["catalog", "ls", "--endpoint-url", with_password, "--json"],
                   {**env, "AWS_ENDPOINT_URL": bare})
    for run in (by_env, by_flag):
        assert run.returncode == 2, run.stderr[-2000:]
        last = run.stderr.strip().splitlines()[-1]
        assert last.startswith(f"error: the endpoint URL {bare} carries a user name or "
                               "password"), last
        assert "AWS_ACCESS_KEY_ID" in last
        assert SECRET not in run.stdout + run.stderr
    # nothing was written in the store's job records (the command was refused first)
    store = open_store(env={**s3_env})
    for key in store.list("runs"):
        assert SECRET not in store.read_bytes(key).decode("utf-8", "replace"), key
    with pytest.raises(StoreError) as err:
        Store("s3://hardening/p", f"http://{SECRET}@127.0.0.1:{port}")  # user only
    assert SECRET not in str(err.value)


def test_url_passwords_are_blanked_in_logs_records_and_store_errors(monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", f"http://proxy:{SECRET}@10.0.0.1:3128")
    url = f"http://user:{SECRET}@127.0.0.1:9000"
    assert redact(f"GET {url}/b/k?x=1 ok") == "GET http://user:***@127.0.0.1:9000/b/k?x=1 ok"
    assert redact(f"'{url}', \"{url}\"") == ("'http://user:***@127.0.0.1:9000', "
                                             "\"http://user:***@127.0.0.1:9000\"")
    # a raw "@" in the password: blanked up to the authority's last "@", as parsers read it
    assert redact("s3+http://u:p@ss@host:1/x") == "s3+http://u:***@host:1/x"
    # what is not a password stays: a port, an "@" in a path, a user alone
    for same in ("http://127.0.0.1:9000/b/a@b", "ssh://git@host/x", "mail me@host"):
        assert redact(same) == same
    record = redact_record({"command": ["ingest", "--endpoint-url", url],
                            "error": f"cannot reach {url}"})
    assert SECRET not in str(record) and "user:***@" in str(record)

    buf = io.StringIO()
    mine = logging.StreamHandler(buf)
    root = logging.getLogger()
    old = root.level
    root.addHandler(mine)
    try:
        configure_logging(logging.DEBUG)
        logging.getLogger("botocore.endpoint").debug("Sending http request: %s",
                                                     {"url": url, "proxy": os.environ[
                                                         "HTTPS_PROXY"]})
    finally:
        root.removeHandler(mine)
        configure_logging(old or logging.INFO)
    assert "Sending http request" in buf.getvalue() and SECRET not in buf.getvalue()

    # a client error whose text quotes a URL (a proxy's, say): the store error blanks it
    st = open_store("s3://hardening/p", "http://127.0.0.1:9")
    assert st.describe() == "s3://hardening/p at http://127.0.0.1:9"
    with pytest.raises(StoreError) as err:
        with st._errors("read k"):
            raise OSError(f"proxy {os.environ['HTTPS_PROXY']} answered 407")
    assert SECRET not in str(err.value) and "proxy:***@10.0.0.1" in str(err.value)
