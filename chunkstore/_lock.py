"""One writer per output: a job holds ``locks/<output key>.json`` while it writes.

The lock is taken with a conditional create (S3 ``If-None-Match: *``; ``O_EXCL`` in a
directory store), so of two jobs started on one output exactly one gets it and the
other is refused at once. The holder renews it every ``ttl / 4`` seconds with a
conditional replace (``If-Match``); a lock not renewed for ``ttl`` seconds belongs to
a dead job and is taken over the same way, so a crashed job never blocks its re-run
for longer than ``ttl`` (not at all on the same host, where a holder whose process is
gone is known to be dead).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

from ._layout import lock_key
from ._store import Store
from .errors import LockedError, NotFoundError, SatchunkError

TTL_S = 120.0
log = logging.getLogger("satchunk.lock")


@dataclass
class OutputLock:
    """A held lock; ``lost`` turns true if another job took it over meanwhile."""

    store: Store
    key: str
    body: dict
    etag: str
    lost: bool = False
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)

    def _renew(self, every: float) -> None:
        while not self._stop.wait(every):
            self.body["heartbeat"] = time.time()
            try:
                etag = self.store.replace_bytes(self.key, _dump(self.body), self.etag)
            except SatchunkError as exc:  # the store is away: try again next time
                log.warning("could not renew %s: %s", self.key, exc)
                continue
            if etag is None:
                self.lost = True
                log.error("lost %s: another job took it over", self.key)
                return
            self.etag = etag


@contextmanager
def output_lock(store: Store, key: str, what: str, ttl: float = TTL_S
                ) -> Iterator[OutputLock]:
    """Hold the lock of the output at ``key`` (``what`` names it in messages)."""
    lkey = lock_key(key)
    body = {"owner": uuid.uuid4().hex, "host": socket.gethostname(), "pid": os.getpid(),
            "since": datetime.now(UTC).isoformat(timespec="seconds"),
            "heartbeat": time.time(), "ttl_s": ttl}
    if not store.create_bytes(lkey, _dump(body)):
        _take_over(store, lkey, body, what, ttl)
    lock = OutputLock(store, lkey, body, store.etag(lkey))
    renew = threading.Thread(target=lock._renew, args=(ttl / 4,), daemon=True,
                             name="satchunk-lock")
    renew.start()
    try:
        yield lock
    finally:
        lock._stop.set()
        renew.join()
        if not lock.lost:
            try:
                store.delete(lkey)
            except SatchunkError as exc:  # it expires by itself
                log.warning("could not release %s: %s", lkey, exc)


def _take_over(store: Store, lkey: str, body: dict, what: str, ttl: float) -> None:
    """Replace a lock that its holder stopped renewing; refuse a live one."""
    try:
        etag = store.etag(lkey)
        held = json.loads(store.read_bytes(lkey))
    except NotFoundError:  # released just now: one more try
        if store.create_bytes(lkey, _dump(body)):
            return
        raise LockedError(f"{what} is being written by another job: wait for it to "
                          "finish and re-run") from None
    except ValueError:  # being written this instant
        held = {"heartbeat": time.time()}
        etag = ""
    age = time.time() - float(held.get("heartbeat", 0))
    live = age < float(held.get("ttl_s", ttl)) and not _dead_here(held)
    if live or not etag:
        who = f"pid {held.get('pid', '?')} on {held.get('host', '?')}"
        raise LockedError(
            f"{what} is being written by another job ({who}, since {held.get('since', '?')}): "
            f"wait for it to finish; if that job is dead, re-run after {ttl:.0f} s, when its "
            f"lock ({store.url(lkey)}) expires") from None
    if store.replace_bytes(lkey, _dump(body), etag) is None:
        raise LockedError(f"{what} was just taken by another job: wait for it to finish")
    log.warning("took over %s from a job that stopped (last renewed %.0f s ago)", lkey, age)


def _dead_here(held: dict) -> bool:
    """The holder ran on this host and its process is gone (killed, crashed)."""
    if held.get("host") != socket.gethostname():
        return False
    try:
        os.kill(int(held.get("pid", 0)), 0)
    except ProcessLookupError:
        return True
    except (OSError, ValueError):
        return False
    return int(held.get("pid", 0)) <= 0


def _dump(body: dict) -> bytes:
    return json.dumps(body).encode()
