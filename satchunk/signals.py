"""Serving until the user stops it: block until SIGINT, SIGTERM or SIGHUP."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable


def _stop_signals() -> list[signal.Signals]:
    """SIGINT and SIGTERM, and SIGHUP (the terminal closed) unless it is ignored: a
    command started under ``nohup`` is meant to outlive its terminal. Windows has no SIGHUP."""
    sigs = [signal.SIGINT, signal.SIGTERM]
    hup = getattr(signal, "SIGHUP", None)
    if hup is not None and signal.getsignal(hup) is not signal.SIG_IGN:
        sigs.append(hup)
    return sigs


def wait_for_signal(check: Callable[[], None] | None = None) -> None:
    """Block until SIGINT, SIGTERM or SIGHUP, each a clean stop (the caller's cleanup
    runs, the exit status is 0); ``check()`` runs twice a second and may raise to stop
    waiting (a served process that died, say)."""
    stop = threading.Event()
    for sig in _stop_signals():
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(0.5):
        if check is not None:
            check()
