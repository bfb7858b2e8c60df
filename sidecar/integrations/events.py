"""The app's follower of its sidecar's shutdown events (`GET /events`, Server-Sent Events): keeps a
ShutdownState (started, stopping, t0, deadline) from each event's /status document. Standard
library only, on the app's own loop; it never blocks a request, and an unreachable sidecar only
costs one warning. The demo app and the integrations share it."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
import urllib.parse
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, Final

SIDECAR_URL_ENV: Final = "SHUTDOWN_SIDECAR_URL"  # sidecar.simulate.podspec gives it to each app
DEFAULT_SIDECAR_URL: Final = "http://127.0.0.1:9180"  # the pod's loopback, the sidecar's default port
RUNNING: Final = "running"
DRAIN: Final = "drain"  # the app is told to stop now: its preStop hook has returned
DONE: Final = "done"  # the last event: the sidecar closes the stream after it
CONNECT_TIMEOUT_SECONDS: Final = 2.0
FIRST_BACKOFF_SECONDS: Final = 0.2
MAX_BACKOFF_SECONDS: Final = 5.0
MAX_LINE_BYTES: Final = 64 * 1024

Log = Callable[..., None]
logger = logging.getLogger("sidecar.integrations")


def log_to_logging(message: str, *, level: str = "info", **fields: object) -> None:
    """The default Log: the standard logging module, fields as key=value."""
    details = " ".join(f"{key}={value}" for key, value in fields.items())
    logger.log(logging.getLevelNamesMapping()[level.upper()], f"{message} {details}".rstrip())


@dataclasses.dataclass
class ShutdownState:
    """What the app knows of its pod's shutdown, from the sidecar's events. Times are Unix seconds
    (the sidecar's clock, which is the pod's). `started` and `stopping` belong to the loop that
    follows the events; threads read `is_started`/`is_stopping`."""

    started: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)  # t0 has passed
    stopping: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)  # the drain phase began
    t0: float | None = None
    deadline: float | None = None
    report_reserve_seconds: float = 1.0
    phase: str = RUNNING
    # What the lifespan helper did with the app's background tasks (its DrainResult.report()): sent
    # with the completion report, so the sidecar's report says what was waited for and cancelled.
    tasks: dict[str, Any] | None = None

    @property
    def is_started(self) -> bool:
        return self.phase != RUNNING

    @property
    def is_stopping(self) -> bool:
        return self.phase not in (RUNNING, "prestop_delay")

    def seconds_left(self, reserve_seconds: float = 0.0) -> float | None:
        """Seconds until the deadline less `reserve_seconds` (at least 0); None before t0."""
        if self.deadline is None:
            return None
        return max(0.0, self.deadline - reserve_seconds - time.time())

    async def wait_started(self) -> None:
        await self.started.wait()

    def update(self, phase: str, document: Mapping[str, Any]) -> None:
        self.phase = phase
        for name in ("t0", "deadline", "report_reserve_seconds"):
            value = document.get(name)
            if isinstance(value, int | float) and not isinstance(value, bool):
                setattr(self, name, float(value))
        if phase != RUNNING:
            self.started.set()
        if self.is_stopping:
            self.stopping.set()


class StreamUnavailable(Exception):
    """The sidecar answered, but not with an event stream (a 429: too many streams; a 404: an
    older sidecar)."""


def address_of(url: str, endpoint: str = "/events") -> tuple[str, int, str]:
    """(host, port, path of `endpoint`) from the sidecar's base URL; ValueError unless http://
    with a host and a valid port."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"not an http:// URL: {without_credentials(url)!r}")
    return parts.hostname, parts.port or 80, parts.path.rstrip("/") + endpoint


def without_credentials(url: str) -> str:
    """`url` for a log line or an error: credentials in it (user:password@) replaced, so no secret
    is logged."""
    scheme, separator, rest = url.partition("://") if "://" in url else ("", "", url)
    authority, slash, path = rest.partition("/")
    if "@" in authority:
        authority = "***@" + authority.rpartition("@")[2]
    return f"{scheme}{separator}{authority}{slash}{path}"


class ShutdownEvents:
    """Follows the stream into `state`; `started` is set at the first event whose phase is not
    `running` (t0 has passed)."""

    def __init__(
        self,
        url: str,
        log: Log = log_to_logging,
        started: asyncio.Event | None = None,
        state: ShutdownState | None = None,
    ) -> None:
        self.url = url
        self.state = ShutdownState() if state is None else state
        if started is not None:
            self.state.started = started
        self._log = log
        self._host, self._port, self._path = address_of(url)

    @property
    def started(self) -> asyncio.Event:
        return self.state.started

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
                self._log(message, level="warning", url=without_credentials(self.url), error=problem)
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
            self._log("following sidecar events", url=without_credentials(self.url))
            async for phase, document in events(body_lines(reader, chunked=is_chunked(header_block))):
                if phase != RUNNING and not self.started.is_set():
                    self._log("shutdown started: answering connection: close", phase=phase)
                self.state.update(phase, document)
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


async def events(lines: AsyncIterator[str]) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """Each event's phase (its `event:` name, else its data's "phase") and its data as a JSON
    object ({} when it is not one). Comments (`:`) and `id:` lines are skipped; an event without
    a phase is ignored."""
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
        document = document_in(data)
        phase = name or document.get("phase")
        name, data = "", ""
        if isinstance(phase, str) and phase:
            yield phase, document


async def phases(lines: AsyncIterator[str]) -> AsyncIterator[str]:
    """Each event's phase only."""
    async for phase, _ in events(lines):
        yield phase


def document_in(data: str) -> dict[str, Any]:
    try:
        document = json.loads(data)
    except ValueError:
        return {}
    return document if isinstance(document, dict) else {}
