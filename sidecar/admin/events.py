"""Shutdown events for the app (GET /events): Server-Sent Events carrying the /status document at
once and at every phase change, so an app in any language learns t0 and its budget before its
stop signal, and can answer `Connection: close` from t0 while it still serves. Bounded: at most
MAX_STREAMS streams, each holding at most one event per phase; a stream ends after `done`, and
nothing here ever holds the sidecar's exit."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, Final

from starlette.types import Receive, Scope, Send

from sidecar.lifecycle import Phase, Timeline

MAX_STREAMS: Final = 64
# A comment line this often on an idle stream: proxies and client read timeouts see a live
# stream, and a client that has gone is noticed at the next write.
KEEPALIVE_SECONDS: Final = 5.0
KEEPALIVE: Final = b": keep-alive\n\n"
STREAM_HEADERS: Final = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),  # nginx-style proxies would otherwise hold events back
]
JSON_HEADERS: Final = [(b"content-type", b"application/json")]
RETRY_AFTER: Final = (b"retry-after", b"5")


def format_event(event_id: int, document: Mapping[str, Any]) -> bytes:
    """One event: its name is the phase, its data the /status document on one line."""
    data = json.dumps(document, separators=(",", ":"), default=str)
    return f"id: {event_id}\nevent: {document['phase']}\ndata: {data}\n\n".encode()


class EventStream:
    """One client's stream. Its queue is unbounded in type but not in fact: it receives the first
    event and then at most one per phase change, and there are four of those in a sidecar's life.
    A client that does not read holds the writer at the transport's flow control, so nothing piles
    up here either."""

    def __init__(self, first: bytes, on_close: Callable[[EventStream], None], *, ended: bool = False) -> None:
        """`ended`: the sidecar is done already; the stream ends after its first event."""
        self._queue: asyncio.Queue[bytes] = asyncio.Queue()
        self._queue.put_nowait(first)
        self._on_close = on_close
        self._ended = ended

    def push(self, event: bytes, *, last: bool) -> None:
        self._queue.put_nowait(event)
        self._ended = self._ended or last

    async def chunks(self) -> AsyncIterator[bytes]:
        """The events as they come, a keep-alive comment when idle; ends after `done`."""
        while True:
            try:
                async with asyncio.timeout(KEEPALIVE_SECONDS):
                    event = await self._queue.get()
            except TimeoutError:
                yield KEEPALIVE
                continue
            yield event
            if self._ended and self._queue.empty():
                return

    def close(self) -> None:
        self._on_close(self)


class ShutdownEvents:
    """Fans each phase change out to the open streams. A Timeline listener."""

    def __init__(self, status: Callable[[], Mapping[str, Any]], *, max_streams: int = MAX_STREAMS) -> None:
        self._status = status
        self._max_streams = max_streams
        self._streams: set[EventStream] = set()
        self._next_id = 0
        self._done = False

    @property
    def open_streams(self) -> int:
        return len(self._streams)

    def open(self) -> EventStream | None:
        """A new stream starting with the current status, or None when MAX_STREAMS are open.
        Registered at once, so no phase change between opening and the first read is lost."""
        if len(self._streams) >= self._max_streams:
            return None
        stream = EventStream(self._event(), self._streams.discard, ended=self._done)
        self._streams.add(stream)
        return stream

    def on_phase_change(self, previous: Phase, current: Phase, timeline: Timeline) -> None:
        event = self._event()
        self._done = current is Phase.DONE
        for stream in self._streams:
            stream.push(event, last=self._done)

    def _event(self) -> bytes:
        self._next_id += 1
        return format_event(self._next_id, self._status())


class EventsEndpoint:
    """The ASGI endpoint of GET /events: 429 beyond MAX_STREAMS, else the stream until `done` or
    until the client goes. The stream is released in every case (a `finally`, not a callback
    that a cancelled response would skip), so a client that vanishes frees its slot."""

    def __init__(self, events: ShutdownEvents) -> None:
        self.events = events

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        stream = self.events.open()
        if stream is None:
            body = b'{"error":"too many event streams"}'
            await send({"type": "http.response.start", "status": 429, "headers": [*JSON_HEADERS, RETRY_AFTER]})
            await send({"type": "http.response.body", "body": body})
            return
        try:
            pump = asyncio.ensure_future(self._pump(stream, send))
            gone = asyncio.ensure_future(wait_for_disconnect(receive))
            done, pending = await asyncio.wait({pump, gone}, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            if pump in done:
                pump.result()  # a failure to send is the server's to log, not ours to hide
        finally:
            stream.close()

    @staticmethod
    async def _pump(stream: EventStream, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": STREAM_HEADERS})
        async for chunk in stream.chunks():
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})


async def wait_for_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
