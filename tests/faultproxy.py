"""A loopback HTTP/1.1 proxy in front of the embedded S3 server that injects
faults into chosen requests: connection resets, response bodies cut mid-stream,
long delays, 503 SlowDown and 403 AccessDenied. Traffic goes only to 127.0.0.1;
the proxy stops with :meth:`FaultProxy.stop` (or at the end of its ``with``)."""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

# rule(method, path, n) -> fault or None; n counts requests from 1
Rule = Callable[[str, str, int], "str | None"]

_ERRORS = {
    "503": (503, "Slow Down", "SlowDown", "Please reduce your request rate."),
    "403": (403, "Forbidden", "AccessDenied", "Access Denied"),
}


@dataclass
class FaultProxy:
    upstream: tuple[str, int]
    rule: Rule = lambda method, path, n: None  # noqa: E731
    delay_s: float = 5.0
    requests: int = 0
    faults: dict[str, int] = field(default_factory=dict)
    port: int = 0

    def __enter__(self) -> FaultProxy:
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="fault-proxy")
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self._loop.is_running():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    # -- the event loop thread ------------------------------------------------------
    def _run(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._loop.run_until_complete(self._serve())

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        async with server:
            await self._stop.wait()
            server.close()
            clients = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in clients:
                t.cancel()
            await asyncio.gather(*clients, return_exceptions=True)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_r, up_w = await asyncio.open_connection(*self.upstream)
        try:
            while True:
                head = await _read_head(reader)
                if head is None:
                    return
                if (_header(head, b"expect") or b"").lower() == b"100-continue":
                    head = _drop_header(head, b"expect")  # not signed by SigV4
                    writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                    await writer.drain()
                body = await _read_body(reader, head)
                method, path = head.split(b" ", 2)[:2]
                self.requests += 1
                fault = self.rule(method.decode(), path.decode(), self.requests)
                if fault:
                    self.faults[fault] = self.faults.get(fault, 0) + 1
                if fault == "reset":
                    _reset(writer)
                    return
                if fault in _ERRORS:
                    writer.write(_error_response(*_ERRORS[fault]))
                    await writer.drain()
                    continue
                up_w.write(head + body)
                await up_w.drain()
                rhead = await _read_head(up_r)
                if rhead is None:
                    return
                rbody = await _read_body(up_r, rhead, response=True,
                                         head_request=method == b"HEAD")
                if fault == "delay":
                    await asyncio.sleep(self.delay_s)
                if fault == "cut" and len(rbody) > 1:
                    writer.write(rhead + rbody[: len(rbody) // 2])
                    await writer.drain()
                    _reset(writer)
                    return
                writer.write(rhead + rbody)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            return
        finally:
            up_w.close()
            if not writer.is_closing():
                writer.close()


async def _read_head(reader: asyncio.StreamReader) -> bytes | None:
    try:
        return await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None


def _header(head: bytes, name: bytes) -> bytes | None:
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == name:
            return v.strip()
    return None


def _drop_header(head: bytes, name: bytes) -> bytes:
    lines = head.split(b"\r\n")
    keep = [lines[0]] + [ln for ln in lines[1:] if ln.partition(b":")[0].strip().lower() != name]
    return b"\r\n".join(keep)


async def _read_body(reader: asyncio.StreamReader, head: bytes, response: bool = False,
                     head_request: bool = False) -> bytes:
    status = int(head.split(b" ", 2)[1]) if response else 0
    if head_request or status in (204, 304) or 100 <= status < 200:
        return b""
    length = _header(head, b"content-length")
    if length is not None:
        return await reader.readexactly(int(length))
    if (_header(head, b"transfer-encoding") or b"").lower() == b"chunked":
        out = bytearray()
        while True:
            size_line = await reader.readuntil(b"\r\n")
            out += size_line
            size = int(size_line.split(b";")[0], 16)
            out += await reader.readexactly(size + 2)
            if size == 0:
                return bytes(out)
    return b""


def _error_response(status: int, reason: str, code: str, message: str) -> bytes:
    body = (f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
            f"<Message>{message}</Message><RequestId>fault-proxy</RequestId></Error>").encode()
    return (f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/xml\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST, as a crashed peer or middlebox would."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
