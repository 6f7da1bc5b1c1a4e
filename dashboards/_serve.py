"""Serving the dashboard: in this thread until stopped, or in a background thread."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from chunkstore import Store, StoreError

from ._app import make_app
from ._guard import Hosts, bound_hosts


@dataclass
class Dashboard:
    """A running dashboard; ``stop()`` closes its socket and its thread."""

    url: str
    _loop: asyncio.AbstractEventLoop = field(repr=False)
    _thread: threading.Thread = field(repr=False)
    _stopped: asyncio.Event = field(repr=False)

    def stop(self) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stopped.set)
            self._thread.join(timeout=10)


def _bind(host: str, port: int) -> list[socket.socket]:
    from tornado.netutil import bind_sockets

    try:
        return bind_sockets(port, address=host)
    except OSError as exc:
        raise StoreError(f"cannot serve the dashboard on {host}:{port} ({exc.strerror}): pick "
                         "another --port (0 = any free one)") from None


def start_dashboard(store: Store, host: str = "127.0.0.1", port: int = 8050,
                    allowed_hosts: Iterable[str] = ()) -> Dashboard:
    """Serve the dashboard of ``store`` from a background thread; returns its URL.

    It answers requests for the address it is bound to (and the loopback names when it
    listens on loopback or on every address) and for ``allowed_hosts`` (``name`` or
    ``name:port``, as the browser's address bar shows them); a request with another Host
    (DNS rebinding) gets a 400.
    """
    from tornado.httpserver import HTTPServer

    extra = list(allowed_hosts)
    Hosts(extra)  # a bad one is refused before anything is bound
    sockets = _bind(host, port)
    bound = sockets[0].getsockname()[1]
    app = make_app(store, [*bound_hosts(host, bound), *extra])
    ready = threading.Event()
    box: dict[str, Any] = {}

    def main() -> None:
        async def serve() -> None:
            server = HTTPServer(app)
            server.add_sockets(sockets)
            box["loop"], box["stopped"] = asyncio.get_running_loop(), asyncio.Event()
            ready.set()
            await box["stopped"].wait()
            server.stop()
            await server.close_all_connections()

        asyncio.run(serve())

    thread = threading.Thread(target=main, name="satchunk-dashboard", daemon=True)
    thread.start()
    ready.wait()
    shown = f"[{host}]" if ":" in host else host
    return Dashboard(f"http://{shown}:{bound}/", box["loop"], thread, box["stopped"])
