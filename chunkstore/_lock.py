"""One writer per output: a job holds ``locks/<output key>.json`` while it writes.

The lock is taken with a conditional create (S3 ``If-None-Match: *``; ``O_EXCL`` in a
directory store), so of two jobs started on one output exactly one gets it and the
other is refused at once. The holder renews it every ``ttl / 4`` seconds with a
conditional replace (``If-Match``); a lock not renewed for ``ttl`` seconds belongs to
a dead job and is taken over the same way, so a crashed job never blocks its re-run
for longer than ``ttl`` (not at all on the same host, where a holder whose process is
gone is known to be dead).

A lock body is read as untrusted data: one that is not what satchunk writes (not a JSON
object, no numeric ``heartbeat``, a heartbeat more than ``CLOCK_SKEW_S`` in the future)
is taken as expired, and its ``ttl_s`` counts for at most ``MAX_TTL_S``. Taking such a
lock over loses nothing: it is a conditional replace, and a job that still held it finds
it gone at its next renewal and commits nothing. Refusing it instead would block the
output until someone deleted the object by hand.
"""

from __future__ import annotations

import json
import logging
import math
import os
import reprlib
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
MAX_TTL_S = TTL_S  # the longest ttl satchunk writes: a longer one read back counts as this
CLOCK_SKEW_S = 30.0  # how far in the future another host's heartbeat may be and be trusted
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
    if not 0 < ttl <= MAX_TTL_S:
        raise ValueError(f"lock ttl {ttl} must be in (0, {MAX_TTL_S:.0f}] s")
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
        held = _load(store.read_bytes(lkey))
    except (SatchunkError, ValueError):
        return None
    return etag if isinstance(held, dict) and held.get("owner") == owner else None


def _load(raw: bytes) -> object:
    """The JSON in ``raw``; a ValueError if it is not JSON (or nested beyond reason)."""
    try:
        return json.loads(raw)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def _take_over(store: Store, lkey: str, body: dict, what: str, ttl: float) -> None:
    """Replace a lock that its holder stopped renewing; refuse a live one."""
    try:
        etag = store.etag(lkey)
        held = _load(store.read_bytes(lkey))
    except NotFoundError:  # released just now: one more try
        if store.create_bytes(lkey, _dump(body)) is not None:
            return
        raise LockedError(f"{what} is being written by another job: wait for it to "
                          "finish and re-run") from None
    except ValueError:  # not JSON: being written this instant, or left broken by a crash
        time.sleep(1.0)
        try:
            etag = store.etag(lkey)
            held = _load(store.read_bytes(lkey))
        except NotFoundError:
            return _take_over(store, lkey, body, what, ttl)
        except ValueError:
            held = None  # broken: nobody holds it
    left, untrusted = _expires_in(held, ttl, time.time())
    if untrusted:
        log.warning("%s is not a lock as satchunk writes it (%s): taken as expired",
                    store.url(lkey), untrusted)
    live = left > 0 and not _dead_here(held)
    if live or not etag:
        h = held if isinstance(held, dict) else {}
        who = f"pid {_show(h.get('pid', '?'))} on {_show(h.get('host', '?'))}"
        raise LockedError(
            f"{what} is being written by another job ({who}, since "
            f"{_show(h.get('since', '?'))}): wait for it to finish; if that job is dead, "
            f"re-run after {math.ceil(max(left, 0.0))} s, when its lock ({store.url(lkey)}) "
            "expires") from None
    if (store.replace_bytes(lkey, _dump(body), etag) is None
            and _ours(store, lkey, body["owner"]) is None):
        raise LockedError(f"{what} was just taken by another job: wait for it to finish")
    log.warning("took over %s from a job that stopped (%s)", lkey,
                untrusted or f"its lock expired {max(-left, 0.0):.0f} s ago")


def _expires_in(held: object, ttl: float, now: float) -> tuple[float, str | None]:
    """Seconds until the lock body ``held`` expires (<= 0: expired), and why it is not
    trusted (then expired), or None. Its ``ttl_s`` (``ttl`` if absent) is clamped to
    ``MAX_TTL_S``; a heartbeat more than ``CLOCK_SKEW_S`` ahead of ``now`` is not trusted,
    as no renewal written since could be told from it: it would block the output for as
    long as it is ahead."""
    if held is None:
        return 0.0, "not JSON"
    if not isinstance(held, dict):
        return 0.0, f"a JSON {type(held).__name__}, not an object"
    beat = held.get("heartbeat")
    if not _seconds(beat):
        return 0.0, f"heartbeat {_show(beat)} is not a time in seconds"
    if beat > now + CLOCK_SKEW_S:
        return 0.0, f"heartbeat {beat - now:.3g} s in the future"
    held_ttl = held.get("ttl_s", ttl)
    if not _seconds(held_ttl) or held_ttl <= 0:
        return 0.0, f"ttl_s {_show(held_ttl)} is not a positive number of seconds"
    return beat + min(held_ttl, MAX_TTL_S) - now, None


def _seconds(value: object) -> bool:
    """A finite JSON number (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int beyond any float
        return False


def _show(value: object, limit: int = 40) -> str:
    """``value`` for a one-line message: printable, at most ``limit`` characters."""
    try:
        text = value if isinstance(value, str) else reprlib.repr(value)
    except ValueError:  # an int of more digits than Python will print
        text = f"a {type(value).__name__}"
    text = "".join(c if c.isprintable() else "?" for c in text[:limit + 1])
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _dead_here(held: object) -> bool:
    """The holder ran on this host and its process is gone (killed, crashed)."""
    if not isinstance(held, dict) or held.get("host") != socket.gethostname():
        return False
    pid = held.get("pid")
    if isinstance(pid, bool) or not isinstance(pid, int):
        return False  # not a pid: not known to be dead
    if pid <= 0:
        return True  # no process has it
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):  # gone, or beyond any pid
        return True
    except OSError:
        return False
    return False


def _dump(body: dict) -> bytes:
    return json.dumps(body).encode()
