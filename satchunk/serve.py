"""The long-running commands: the embedded S3 server and the dashboard, each served until
Ctrl-C, SIGTERM or SIGHUP (its terminal closed), each a clean stop with exit 0."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from chunkstore import SatchunkError, start_s3_server

from .place import Place
from .signals import wait_for_signal


def serve_store(directory: str, host: str = "127.0.0.1", port: int = 9000,
                bucket: str = "satchunk") -> None:
    """SeaweedFS on ``host:port`` (0 = a free port) with ``bucket``; prints the variables
    that point a shell at it. A signal stops the server before this returns; if this
    process is killed outright, the server dies with it on Linux (see ``chunkstore._server``)."""
    server = start_s3_server(directory, host=host, port=port or None, bucket=bucket)

    def check() -> None:
        if server.process is not None and server.process.poll() is not None:
            raise SatchunkError(f"the S3 server exited: see {server.data_dir}/weed.log")

    try:
        for k, v in server.env().items():
            if k != "AWS_REGION":
                print(f"export {k}={v}")
        print(f"# serving {server.endpoint_url} from {server.data_dir} (pid {server.pid}); "
              "Ctrl-C stops it (its graceful stop takes up to 15 s)", file=sys.stderr)
        sys.stdout.flush()
        wait_for_signal(check)
    finally:
        server.stop()


def serve_dashboard(place: Place, host: str = "127.0.0.1", port: int = 8050,
                    allowed_hosts: Sequence[str] = ()) -> None:
    """The satchunk dashboard over the store of ``place``; it answers only at its own
    address and ``allowed_hosts``."""
    from dashboards import start_dashboard

    st = place.checked()
    served = start_dashboard(st, host, port, allowed_hosts)
    print(f"satchunk dashboard: {served.url} (store {st.describe()}); Ctrl-C stops it")
    sys.stdout.flush()
    wait_for_signal()
    served.stop()
