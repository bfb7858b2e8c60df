"""The demo app's follower of its sidecar's shutdown events (`GET /events`, Server-Sent Events):
tells the app once shutdown has started (any phase but `running`). Standard library only, on the
app's own loop; it never blocks a request, and an unreachable sidecar only costs one warning."""

from __future__ import annotations

import asyncio
import json
import urllib.parse
from collections.abc import AsyncIterator, Callable
from typing import Final

SIDECAR_URL_ENV: Final = "SHUTDOWN_SIDECAR_URL"  # sidecar.simulate.podspec gives it to each app
RUNNING: Final = "running"
DONE: Final = "done"  # the last event: the sidecar closes the stream after it
CONNECT_TIMEOUT_SECONDS: Final = 2.0
FIRST_BACKOFF_SECONDS: Final = 0.2
MAX_BACKOFF_SECONDS: Final = 5.0
MAX_LINE_BYTES: Final = 64 * 1024

Log = Callable[..., None]


class StreamUnavailable(Exception):
    """The sidecar answered, but not with an event stream (a 429: too many streams; a 404: an
    older sidecar)."""


def address_of(url: str) -> tuple[str, int, str]:
    """(host, port, path of /events) from the sidecar's base URL; ValueError unless http://."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"not an http:// URL: {url!r}")
    return parts.hostname, parts.port or 80, parts.path.rstrip("/") + "/events"


class ShutdownEvents:
    """`started` is set at the first event whose phase is not `running` (t0 has passed)."""

    def __init__(self, url: str, log: Log, started: asyncio.Event | None = None) -> None:
        self.url = url
        self.started = asyncio.Event() if started is None else started
        self._log = log
        self._host, self._port, self._path = address_of(url)

    async def follow(self) -> None:
        """Until the stream ends after `done` (or the task is cancelled): a lost or refused
        stream is retried with a doubling backoff; the first failure is logged, once."""
        backoff = FIRST_BACKOFF_SECONDS
        warned = False
        while True:
            try:
                if await self._follow_once():
                    return
                problem = "the event stream ended before done"
            except StreamUnavailable as exc:
                problem = str(exc)
            except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
                problem = f"{type(exc).__name__}: {exc}"
            else:
                backoff = FIRST_BACKOFF_SECONDS  # it had connected: start over from a short wait
            if not warned:
                message = "sidecar events unavailable; serving without them"
                self._log(message, level="warning", url=self.url, error=problem)
                warned = True
            await asyncio.sleep(backoff)  # a backoff between attempts, not a synchronisation
            backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)

    async def _follow_once(self) -> bool:
        """One stream, to its end; True when it ended after `done`."""
        async with asyncio.timeout(CONNECT_TIMEOUT_SECONDS):
            reader, writer = await asyncio.open_connection(self._host, self._port, limit=MAX_LINE_BYTES)
        try:
            host = f"{self._host}:{self._port}"
            writer.write(f"GET {self._path} HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n\r\n".encode())
            async with asyncio.timeout(CONNECT_TIMEOUT_SECONDS):
                head = await reader.readuntil(b"\r\n\r\n")
            status_line, _, header_block = head.decode("latin-1").partition("\r\n")
            status = status_line.split(" ", 2)[1] if status_line.count(" ") else ""
            if status != "200":
                raise StreamUnavailable(f"GET {self._path} answered {status_line.strip()!r}")
            self._log("following sidecar events", url=self.url)
            async for phase in phases(body_lines(reader, chunked=is_chunked(header_block))):
                if phase != RUNNING and not self.started.is_set():
                    self._log("shutdown started: answering connection: close", phase=phase)
                    self.started.set()
                if phase == DONE:
                    return True
            return False
        finally:
            writer.close()


def is_chunked(header_block: str) -> bool:
    for line in header_block.split("\r\n"):
        name, _, value = line.partition(":")
        if name.strip().lower() == "transfer-encoding" and "chunked" in value.lower():
            return True
    return False


async def body_lines(reader: asyncio.StreamReader, *, chunked: bool) -> AsyncIterator[str]:
    """The body's lines, without their endings, until the server closes; de-chunked if need be."""
    if not chunked:
        while line := await reader.readline():
            yield line.decode().rstrip("\r\n")
        return
    pending = b""
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0].strip(), 16)
        if size == 0:
            return
        pending += (await reader.readexactly(size + 2))[:-2]
        if len(pending) > MAX_LINE_BYTES:
            raise ValueError("an event line longer than 64 KiB")
        *complete, pending = pending.split(b"\n")
        for line in complete:
            yield line.decode().rstrip("\r")


async def phases(lines: AsyncIterator[str]) -> AsyncIterator[str]:
    """Each event's phase: its `event:` name, else its data's "phase". Comments (`:`) and `id:`
    lines are skipped; an event without a phase is ignored."""
    name, data = "", ""
    async for line in lines:
        if line:
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "event":
                name = value
            elif field == "data":
                data = f"{data}\n{value}" if data else value
            continue
        phase = name or phase_in(data)
        name, data = "", ""
        if phase:
            yield phase


def phase_in(data: str) -> str:
    try:
        document = json.loads(data)
    except ValueError:
        return ""
    phase = document.get("phase") if isinstance(document, dict) else None
    return phase if isinstance(phase, str) else ""
