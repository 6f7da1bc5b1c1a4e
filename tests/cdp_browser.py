"""A headless Chromium (Debian's ``chromium``) driven over the DevTools protocol: load a
page, collect console errors, uncaught exceptions and failed requests, read the DOM,
take a screenshot. Used by the dashboard tests."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any


def chromium_path() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        if path := shutil.which(name):
            return path
    return None


@dataclass
class PageLoad:
    url: str
    errors: list[str] = field(default_factory=list)  # console errors, exceptions, HTTP >= 400
    text: str = ""
    screenshot: bytes = b""
    images: list[dict[str, Any]] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)  # every URL the page fetched
    probes: dict[str, Any] = field(default_factory=dict)  # values of JS expressions


class Chromium:
    """One headless browser; ``load(url)`` opens the page in a fresh tab."""

    def __init__(self, width: int = 1280, height: int = 900) -> None:
        path = chromium_path()
        if path is None:
            raise RuntimeError("no chromium on PATH: apt-get install chromium")
        self._profile = tempfile.TemporaryDirectory(prefix="satchunk-chromium-")
        self.proc = subprocess.Popen(
            [path, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--no-first-run", "--no-default-browser-check", "--disable-extensions",
             "--disable-background-networking", "--remote-debugging-address=127.0.0.1",
             "--remote-debugging-port=0", f"--user-data-dir={self._profile.name}",
             "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            start_new_session=True)  # its helper processes in one group, stopped together
        self.ws_url = self._ws_url()
        self.size = (width, height)
        self.loop = asyncio.new_event_loop()
        self._id = 0
        self.conn: Any = self.loop.run_until_complete(self._connect())
        self._pending: dict[int, asyncio.Future] = {}
        self._events: list[dict[str, Any]] = []
        self._reader = self.loop.create_task(self._read())

    def _ws_url(self) -> str:
        deadline = time.monotonic() + 60
        assert self.proc.stderr is not None
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if m := re.search(r"DevTools listening on (ws://\S+)", line):
                return m.group(1)
            if not line and self.proc.poll() is not None:
                break
        self.close()
        raise RuntimeError("chromium did not start its DevTools endpoint")

    async def _connect(self) -> Any:
        from tornado.websocket import websocket_connect

        return await websocket_connect(self.ws_url, max_message_size=256 * 2**20)

    async def _read(self) -> None:
        while True:
            msg = await self.conn.read_message()
            if msg is None:
                return
            data = json.loads(msg)
            if "id" in data and data["id"] in self._pending:
                self._pending.pop(data["id"]).set_result(data)
            else:
                self._events.append(data)

    async def _send(self, method: str, params: dict | None = None,
                    session: str | None = None) -> dict[str, Any]:
        self._id += 1
        fut = self.loop.create_future()
        self._pending[self._id] = fut
        msg: dict[str, Any] = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        await self.conn.write_message(json.dumps(msg))
        reply = await asyncio.wait_for(fut, 60)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    async def _eval(self, expression: str, session: str) -> Any:
        reply = await self._send("Runtime.evaluate", {"expression": expression,
                                                      "returnByValue": True}, session=session)
        return reply["result"].get("value")

    async def _load(self, url: str, settle: float, probes: dict[str, str]) -> PageLoad:
        target = (await self._send("Target.createTarget", {"url": "about:blank"}))["targetId"]
        s = (await self._send("Target.attachToTarget", {"targetId": target,
                                                         "flatten": True}))["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            await self._send(f"{domain}.enable", session=s)
        w, h = self.size
        await self._send("Emulation.setDeviceMetricsOverride",
                         {"width": w, "height": h, "deviceScaleFactor": 1, "mobile": False},
                         session=s)
        self._events.clear()
        await self._send("Page.navigate", {"url": url}, session=s)
        deadline = time.monotonic() + 90
        while not any(e.get("method") == "Page.loadEventFired" and e.get("sessionId") == s
                      for e in self._events):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not finish loading in 90 s")
            await asyncio.sleep(0.05)
        await asyncio.sleep(settle)  # late console messages and requests
        page = PageLoad(url)
        page.text = await self._eval("document.body.innerText", s) or ""
        page.images = await self._eval(
            "Array.from(document.images).map(i => ({src: i.src, complete: i.complete, "
            "width: i.naturalWidth, height: i.naturalHeight}))", s) or []
        page.probes = {k: await self._eval(v, s) for k, v in probes.items()}
        shot = await self._send("Page.captureScreenshot",
                                {"format": "png", "captureBeyondViewport": True}, session=s)
        page.screenshot = base64.b64decode(shot["data"])
        mine = [e for e in self._events if e.get("sessionId") == s]
        page.errors = _errors(mine)
        page.requests = [e["params"]["request"]["url"] for e in mine
                         if e.get("method") == "Network.requestWillBeSent"]
        await self._send("Target.closeTarget", {"targetId": target})
        return page

    def load(self, url: str, probes: dict[str, str] | None = None,
             settle: float = 0.5) -> PageLoad:
        """Open ``url``; ``probes`` are JS expressions evaluated once it has loaded."""
        return self.loop.run_until_complete(self._load(url, settle, probes or {}))

    def close(self) -> None:
        if getattr(self, "conn", None) is not None:
            self.conn.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        try:  # its renderer and crash handler may outlive it, still writing the profile
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if getattr(self, "loop", None) is not None:
            self.loop.close()
        for _ in range(50):
            try:
                self._profile.cleanup()
                return
            except OSError:  # a helper's last write landed mid-removal
                time.sleep(0.1)
        shutil.rmtree(self._profile.name, ignore_errors=True)


def _errors(events: list[dict[str, Any]]) -> list[str]:
    out = []
    for e in events:
        m, p = e.get("method"), e.get("params", {})
        if m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            out.append("console: " + " ".join(str(a.get("value", a.get("description")))
                                              for a in p.get("args", [])))
        elif m == "Runtime.exceptionThrown":
            d = p.get("exceptionDetails", {})
            out.append("exception: " + str(d.get("exception", {}).get("description")
                                           or d.get("text")))
        elif m == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
            out.append(f"log: {p['entry'].get('text')} {p['entry'].get('url', '')}")
        elif m == "Network.responseReceived" and p.get("response", {}).get("status", 0) >= 400:
            out.append(f"http {p['response']['status']}: {p['response']['url']}")
        elif m == "Network.loadingFailed" and not p.get("canceled"):
            out.append(f"request failed: {p.get('errorText')}")
    return out
