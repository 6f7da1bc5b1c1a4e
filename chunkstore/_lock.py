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
from .errors import JobError, LockedError, NotFoundError, SatchunkError

TTL_S = 120.0
log = logging.getLogger("satchunk.lock")


@dataclass
class OutputLock:
    """A held lock; ``lost`` turns true if another job took it over, or if it could not
    be renewed for ``ttl`` seconds (another job may take it over then)."""

    store: Store
    key: str
    body: dict
    etag: str
    ttl: float
    lost: bool = False
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _mutex: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def renew(self) -> bool:
        """One conditional renewal; False if the lock is no longer ours."""
        with self._mutex:
            if self.lost:
                return False
            self.body["heartbeat"] = time.time()
            etag = self.store.replace_bytes(self.key, _dump(self.body), self.etag)
            if etag is None:  # changed: another job's, or our own retried write landed
                etag = _ours(self.store, self.key, self.body["owner"])
            if etag is None:
                self.lost = True
                log.error("lost %s: another job took it over", self.key)
                return False
            self.etag = etag
            return True

    def confirm(self, what: str) -> None:
        """Renew once, now, before committing: a :class:`JobError` if the lock is gone."""
        try:
            held = self.renew()
        except SatchunkError as exc:
            raise JobError(f"could not confirm the lock on {what} before committing ({exc}): "
                           "nothing was committed; re-run") from None
        if not held:
            raise JobError(f"another job took over {what} while this one wrote it (its lock "
                           "was not renewed in time): nothing was committed; re-run")

    def _renew_every(self, every: float) -> None:
        last_ok = time.monotonic()
        while not self._stop.wait(every):
            try:
                if not self.renew():
                    return
                last_ok = time.monotonic()
            except Exception as exc:  # noqa: BLE001 - the store is away: next time
                log.warning("could not renew %s: %s", self.key, exc)
                if time.monotonic() - last_ok > self.ttl:
                    self.lost = True  # others may take it over from now on
                    log.error("lost %s: not renewed for %.0f s", self.key, self.ttl)
                    return


@contextmanager
def output_lock(store: Store, key: str, what: str, ttl: float = TTL_S
                ) -> Iterator[OutputLock]:
    """Hold the lock of the output at ``key`` (``what`` names it in messages)."""
    lkey = lock_key(key)
    owner = uuid.uuid4().hex
    body = {"owner": owner, "host": socket.gethostname(), "pid": os.getpid(),
            "since": datetime.now(UTC).isoformat(timespec="seconds"),
            "heartbeat": time.time(), "ttl_s": ttl}
    # a create retried after a reset may find its own first attempt: that is ours
    etag = store.create_bytes(lkey, _dump(body))
    if etag is None and _ours(store, lkey, owner) is None:
        _take_over(store, lkey, body, what, ttl)
    lock = None
    renew = None
    try:
        etag = etag or _ours(store, lkey, owner)
        if etag is None:
            raise LockedError(f"{what} was just taken by another job: wait for it to finish")
        lock = OutputLock(store, lkey, body, etag, ttl)
        renew = threading.Thread(target=lock._renew_every, args=(ttl / 4,), daemon=True,
                                 name="satchunk-lock")
        renew.start()
        yield lock
    finally:
        if lock is not None:
            lock._stop.set()
        if renew is not None:
            renew.join(timeout=10)  # a renewal stuck on a dead store is left behind
        _release(store, lkey, owner, None if lock is None else lock.etag)


def _release(store: Store, lkey: str, owner: str, etag: str | None) -> None:
    """Delete the lock if it is still ours (never another job's): still the object we
    wrote last (its tag, ``etag``), or one that names us as owner."""
    try:
        if (etag is not None and store.etag(lkey) == etag) \
                or _ours(store, lkey, owner) is not None:
            store.delete_object(lkey)
    except NotFoundError:
        pass
    except SatchunkError as exc:  # it expires by itself
        log.warning("could not release %s: %s", lkey, exc)


def _ours(store: Store, lkey: str, owner: str) -> str | None:
    """The lock's etag if it is held by ``owner``, else None."""
    try:
        etag = store.etag(lkey)
        held = json.loads(store.read_bytes(lkey))
    except (SatchunkError, ValueError):
        return None
    return etag if isinstance(held, dict) and held.get("owner") == owner else None


def _take_over(store: Store, lkey: str, body: dict, what: str, ttl: float) -> None:
    """Replace a lock that its holder stopped renewing; refuse a live one."""
    try:
        etag = store.etag(lkey)
        held = json.loads(store.read_bytes(lkey))
    except NotFoundError:  # released just now: one more try
        if store.create_bytes(lkey, _dump(body)) is not None:
            return
        raise LockedError(f"{what} is being written by another job: wait for it to "
                          "finish and re-run") from None
    except ValueError:  # not JSON: being written this instant, or left broken by a crash
        time.sleep(1.0)
        try:
            etag = store.etag(lkey)
            held = json.loads(store.read_bytes(lkey))
        except NotFoundError:
            return _take_over(store, lkey, body, what, ttl)
        except ValueError:
            held = {"heartbeat": 0.0}  # broken: nobody holds it
    age = time.time() - float(held.get("heartbeat", 0))
    live = age < float(held.get("ttl_s", ttl)) and not _dead_here(held)
    if live or not etag:
        who = f"pid {held.get('pid', '?')} on {held.get('host', '?')}"
        raise LockedError(
            f"{what} is being written by another job ({who}, since {held.get('since', '?')}): "
            f"wait for it to finish; if that job is dead, re-run after {ttl:.0f} s, when its "
            f"lock ({store.url(lkey)}) expires") from None
    if (store.replace_bytes(lkey, _dump(body), etag) is None
            and _ours(store, lkey, body["owner"]) is None):
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
