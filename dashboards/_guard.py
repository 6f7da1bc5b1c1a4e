"""What every answer of the dashboard carries and what it refuses: security headers, a
Host check against DNS rebinding, links only to http(s), bad paths as 404, and error
pages of one line, never a traceback."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from typing import Any

import tornado.escape
import tornado.web
from markupsafe import Markup
from tornado.log import app_log

from chunkstore import NotFoundError, SatchunkError

# Every script and style is a file of the app (the swatches' colours are style
# attributes); images are its own PNGs and icon; nothing may frame a page.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; "
       "style-src-attr 'unsafe-inline'; img-src 'self'; base-uri 'none'; form-action 'none'; "
       "frame-ancestors 'none'")
HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
           "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer"}
LOOPBACK = ("localhost", "127.0.0.1", "::1")

_HOST = re.compile(r"(?:\[(?P<v6>[0-9a-f:.]+)\]|(?P<name>[a-z0-9_](?:[a-z0-9_.-]*[a-z0-9_])?))"
                   r"(?::(?P<port>[0-9]{1,5}))?")
_HTTP = re.compile(r"https?://[^\s\x00-\x1f\x7f\"'<>\\^`{|}]+", re.IGNORECASE)


def split_host(value: str) -> tuple[str, int | None] | None:
    """``(name, port or None)`` of a Host header or ``--allowed-host`` value (an IP
    address in its short form), or None when it is neither a name nor an address."""
    m = _HOST.fullmatch(value.lower())
    if m is None:
        return None
    port = int(m["port"]) if m["port"] else None
    if port is not None and not 0 < port < 65536:
        return None
    name = m["v6"] or m["name"]
    try:
        name = ipaddress.ip_address(name).compressed
    except ValueError:
        if m["v6"]:
            return None
    return name, port


def bound_hosts(host: str, port: int) -> list[str]:
    """The Host values of the address the dashboard is bound to: ``host:port``, and the
    loopback names on that port when it listens on loopback (or on every address)."""
    names = {host}
    try:
        ip = ipaddress.ip_address(host)
        local = ip.is_loopback or ip.is_unspecified
    except ValueError:
        local = host in ("", "localhost")
    if local:
        names.update(LOOPBACK)
    shown = [f"[{n}]:{port}" if ":" in n else f"{n}:{port}" for n in sorted(names) if n]
    return [h for h in shown if split_host(h)]  # not a scoped IPv6 address (fe80::1%eth0)


class Hosts:
    """The Host header values the dashboard answers: each ``name`` (any port) or
    ``name:port``; a Host without a port is on port 80."""

    def __init__(self, allowed: Iterable[str]) -> None:
        self.allowed: set[tuple[str, int | None]] = set()
        for value in allowed:
            got = split_host(value)
            if got is None:
                raise SatchunkError(f"--allowed-host {value[:100]!r} is not a host name, an IP "
                                    "address or HOST:PORT: give it as the browser's address bar "
                                    "shows it (dash.example.org, 10.0.0.5:8050)")
            self.allowed.add(got)

    def allows(self, header: str) -> bool:
        got = split_host(header)
        if got is None:
            return False
        name, port = got
        return (name, None) in self.allowed or (name, port or 80) in self.allowed


def link(url: Any, text: str) -> Markup:
    """``<a>`` to ``url`` when it is http(s); else ``url`` as plain text, so a record's
    ``javascript:`` link is never clickable."""
    if isinstance(url, str) and _HTTP.fullmatch(url):
        return Markup('<a href="{}">{}</a>').format(url, text)
    return Markup("{}: <code>{}</code>").format(text, url)


class Guarded(tornado.web.RequestHandler):
    """A handler that answers only the allowed Hosts, with the security headers, and
    whose error pages are one line."""

    def set_default_headers(self) -> None:
        for name, value in HEADERS.items():
            self.set_header(name, value)

    def prepare(self) -> None:
        if not self.settings["hosts"].allows(self.request.host):
            self.set_status(400)
            self.set_header("Content-Type", "text/plain; charset=utf-8")
            self.finish(f"bad Host header {self.request.host[:100]!r}: this dashboard answers "
                        "only at the address it serves (add a name with --allowed-host)\n")

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        message = (str(exc).splitlines()[0] if isinstance(exc, SatchunkError) and str(exc)
                   else self._reason)
        self.set_header("Content-Type", "text/html; charset=UTF-8")
        self.finish(f"<!doctype html><html><head><meta charset='utf-8'><title>{status_code}"
                    "</title><link rel='icon' href='/static/favicon.svg'></head><body>"
                    f"<p>{tornado.escape.xhtml_escape(message)}</p><p><a href='/'>catalog</a>"
                    "</p></body></html>")

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if isinstance(value, NotFoundError):
            return
        if isinstance(value, SatchunkError):  # a user's (or the data's) error: one line
            app_log.warning("%s %s: %s", self.request.method, self.request.uri, value)
            return
        super().log_exception(typ, value, tb)


class NotFound(Guarded):
    """Any path no route takes."""

    def prepare(self) -> None:
        super().prepare()
        if not self._finished:
            raise tornado.web.HTTPError(404)


class Static(Guarded, tornado.web.StaticFileHandler):
    """The app's static files; any other path (a NUL in it, a folder, outside the
    folder) is a 404."""

    @classmethod
    def get_absolute_path(cls, root: str, path: str) -> str:
        try:
            return super().get_absolute_path(root, path)
        except tornado.web.HTTPError as exc:  # 403: outside the folder
            raise tornado.web.HTTPError(404) from exc

    def validate_absolute_path(self, root: str, absolute_path: str) -> str | None:
        if re.search(r"[\x00-\x1f\x7f]", absolute_path):
            raise tornado.web.HTTPError(404)
        try:
            return super().validate_absolute_path(root, absolute_path)
        except tornado.web.HTTPError as exc:  # 403: a folder, a link out of the folder
            raise tornado.web.HTTPError(404) from exc
        except (ValueError, OSError):
            raise tornado.web.HTTPError(404) from None
