"""Serving until the user stops it: block until SIGINT or SIGTERM."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable


def wait_for_signal(check: Callable[[], None] | None = None) -> None:
    """Block until SIGINT or SIGTERM; ``check()`` runs twice a second and may raise to
    stop waiting (a served process that died, say)."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(0.5):
        if check is not None:
            check()
