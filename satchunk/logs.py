"""Logging for the CLI and its Dask workers: stderr at ``SATCHUNK_LOG_LEVEL`` (INFO
unless set), every handler behind a filter that blanks credentials, so even
botocore at DEBUG, which prints signed request headers, never shows a key."""

from __future__ import annotations

import logging
import os
import sys

from chunkstore import InputError

from .redact import RedactingFilter, secrets_of

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
_FORMAT = "%(levelname)s %(name)s: %(message)s"
_DEBUG_FORMAT = "%(levelname)s %(name)s [%(processName)s]: %(message)s"


class _Stderr(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time (tests swap it)."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def log_level(env: dict[str, str] | None = None) -> int:
    """The level ``SATCHUNK_LOG_LEVEL`` names (INFO when unset)."""
    name = (os.environ if env is None else env).get("SATCHUNK_LOG_LEVEL", "INFO").upper()
    if name not in LEVELS:
        raise InputError(f"SATCHUNK_LOG_LEVEL={name!r} is unknown: use one of "
                         f"{', '.join(LEVELS)}")
    return logging.getLevelName(name)


def configure_logging(level: int | None = None) -> int:
    """Send records at ``level`` and above to stderr, credentials blanked on every handler
    there is (a user's own ones included). Returns the level."""
    level = log_level() if level is None else level
    root = logging.getLogger()
    root.setLevel(level)
    mine = [h for h in root.handlers if getattr(h, "_satchunk", False)]
    if not mine:
        mine = [_Stderr()]
        mine[0]._satchunk = True  # type: ignore[attr-defined]
        root.addHandler(mine[0])
    # at DEBUG, say which process spoke: the client or a Dask worker
    mine[0].setFormatter(logging.Formatter(_DEBUG_FORMAT if level <= logging.DEBUG
                                           else _FORMAT))
    # s3fs leaves its aiohttp sessions to the garbage collector at exit, which logs
    # "Unclosed client session" at ERROR: noise after every command, unless at DEBUG
    logging.getLogger("asyncio").setLevel(logging.CRITICAL if level > logging.DEBUG
                                          else level)
    # pyogrio says "Created N records" at INFO for every file it writes
    logging.getLogger("pyogrio").setLevel(logging.WARNING if level > logging.DEBUG else level)
    redact_all_handlers()
    return level


def redact_all_handlers() -> None:
    """Put the credential filter on every handler there is: root's, and those of loggers
    that do not propagate (distributed's own). Call again after importing a library
    that adds handlers."""
    redactor = RedactingFilter(secrets_of())
    loggers = [logging.getLogger(), *(x for x in logging.root.manager.loggerDict.values()
                       if isinstance(x, logging.Logger))]
    for handler in {h for lg in loggers for h in lg.handlers}:
        for old in [f for f in handler.filters if isinstance(f, RedactingFilter)]:
            handler.removeFilter(old)
        handler.addFilter(redactor)

