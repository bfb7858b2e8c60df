"""Debian's headless Chromium driven over the DevTools protocol (websockets, a dev dependency):
load a page at a given width, and collect what a person's browser would show and do: console
errors, uncaught exceptions, every network request, values read from the DOM, a screenshot.
Every browser started is killed at the end; every wait has a deadline."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Final

from websockets.asyncio.client import ClientConnection, connect

CHROMIUM: Final = os.environ.get("CHROMIUM", "/usr/bin/chromium")
# Flags that work in a container without a display, GPU, sandbox or network, and keep the browser
# from calling home (component updates, sync, QUIC probes) so a request seen is the page's own.
FLAGS: Final = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--remote-debugging-port=0",
)
START_SECONDS: Final = 30.0
LOAD_SECONDS: Final = 60.0


def chromium_path() -> str | None:
    return shutil.which(CHROMIUM)


@dataclasses.dataclass
class Loaded:
    """What loading a page showed."""

    errors: list[str]  # console errors, uncaught exceptions, log entries at level error
    requests: list[str]  # every URL the page asked for, itself included
    values: dict[str, Any]  # from evaluate: expression -> result
    screenshot: bytes  # PNG of the whole page
    load_seconds: float


class Tab:
    """One page's session: the events it was sent, and its calls through the browser's socket."""

    def __init__(self, browser: Chromium, session: str) -> None:
        self._browser, self.session = browser, session
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.loaded = asyncio.Event()

    def record(self, method: str, params: dict[str, Any]) -> None:
        self.events.append((method, params))
        if method == "Page.loadEventFired":
            self.loaded.set()

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        return await self._browser.call(method, session=self.session, **params)

    def errors(self) -> list[str]:
        found = []
        for method, params in self.events:
            if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                found.append("console: " + " ".join(str(a.get("value", a.get("description"))) for a in params["args"]))
            elif method == "Runtime.exceptionThrown":
                found.append("exception: " + str(params["exceptionDetails"].get("text")))
            elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
                found.append("log: " + str(params["entry"].get("text")))
        return found

    def requests(self) -> list[str]:
        return [params["request"]["url"] for method, params in self.events if method == "Network.requestWillBeSent"]


class Chromium:
    """One headless browser; `load` opens each page in a fresh tab."""

    def __init__(self, socket: ClientConnection) -> None:
        self._socket = socket
        self.version = ""
        self._ids = itertools.count(1)
        self._replies: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._tabs: dict[str, Tab] = {}
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for text in self._socket:
            message = json.loads(text)
            if "id" in message and message["id"] in self._replies:
                self._replies.pop(message["id"]).set_result(message)
            elif "method" in message and message.get("sessionId") in self._tabs:
                self._tabs[message["sessionId"]].record(message["method"], message.get("params", {}))

    async def call(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        """Send a DevTools command (to a tab's session when given) and wait for its result."""
        number = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._replies[number] = future
        command = {"id": number, "method": method, "params": params} | ({"sessionId": session} if session else {})
        await self._socket.send(json.dumps(command))
        async with asyncio.timeout(LOAD_SECONDS):
            reply = await future
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        result: dict[str, Any] = reply.get("result", {})
        return result

    async def load(self, url: str, width: int, evaluate: dict[str, str], height: int = 900) -> Loaded:
        """Open `url` in a new tab `width` CSS pixels wide, wait for its load event, read each
        expression of `evaluate`, and screenshot the whole page."""
        target = (await self.call("Target.createTarget", url="about:blank"))["targetId"]
        session = (await self.call("Target.attachToTarget", targetId=target, flatten=True))["sessionId"]
        tab = Tab(self, session)
        self._tabs[session] = tab
        try:
            for domain in ("Runtime", "Log", "Network", "Page"):
                await tab.call(f"{domain}.enable")
            await tab.call(
                "Emulation.setDeviceMetricsOverride",
                width=width,
                height=height,
                deviceScaleFactor=1,
                mobile=width < 600,
            )
            started = time.monotonic()
            await tab.call("Page.navigate", url=url)
            async with asyncio.timeout(LOAD_SECONDS):
                await tab.loaded.wait()
            load_seconds = time.monotonic() - started
            values = {}
            for name, expression in evaluate.items():
                reply = await tab.call("Runtime.evaluate", expression=expression, returnByValue=True)
                values[name] = reply["result"].get("value")
            shot = await tab.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
            return Loaded(tab.errors(), tab.requests(), values, base64.b64decode(shot["data"]), load_seconds)
        finally:
            del self._tabs[session]
            await self.call("Target.closeTarget", targetId=target)


def devtools_address(profile: Path, process: subprocess.Popen[bytes]) -> str:
    """The browser's DevTools websocket, from the file Chromium writes once it listens."""
    deadline = time.monotonic() + START_SECONDS
    port_file = profile / "DevToolsActivePort"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"chromium exited with status {process.returncode} before listening")
        lines = port_file.read_text().split("\n") if port_file.exists() else []
        if len(lines) >= 2 and lines[0].isdigit() and lines[1]:
            return f"ws://127.0.0.1:{lines[0]}{lines[1]}"
        time.sleep(0.05)  # a poll with a deadline: Chromium writes the file when it is ready
    raise RuntimeError("chromium did not listen for DevTools in time")


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[Chromium]:
    executable = chromium_path()
    if executable is None:
        raise RuntimeError(f"{CHROMIUM} not found")
    # Its helpers (zygote, renderers, GPU and network services) share its new process group, so
    # all of them are killed at the end, before the profile directory is removed.
    with tempfile.TemporaryDirectory(prefix="pages-chromium-", ignore_cleanup_errors=True) as directory:
        profile = Path(directory)
        process = subprocess.Popen(  # noqa: ASYNC220 - returns at once; the wait for it is polled in a thread
            [executable, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            address = await asyncio.to_thread(devtools_address, profile, process)
            async with connect(address, max_size=None) as socket:
                browser = Chromium(socket)
                browser.version = (await browser.call("Browser.getVersion"))["product"]
                try:
                    yield browser
                finally:
                    browser._reader.cancel()
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
