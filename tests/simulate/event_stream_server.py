"""A stand-in for the sidecar's GET /events on 127.0.0.1, in the wire format the sidecar serves:
`event: <phase>` and `data: <the /status JSON>` per event, `:` comments, an `id:` line, chunked
as uvicorn sends a streaming body. The test pushes phases; `done` ends the stream. Answers 429
to the first `refuse` requests. Every connection is closed on the way out."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator


class EventStreamServer:
    def __init__(self, refuse: int = 0) -> None:
        self.port = 0
        self.refuse = refuse
        self.attempts = 0  # connections accepted
        self.streams = 0  # answered 200
        self.paths: list[str] = []
        self._phases: asyncio.Queue[str | None] = asyncio.Queue()  # None: end the stream without done
        self._handlers: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def push(self, phase: str | None) -> None:
        self._phases.put_nowait(phase)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self._writers.add(writer)
        self.attempts += 1
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            self.paths.append(head.split(b" ")[1].decode())
            if self.refuse:
                self.refuse -= 1
                writer.write(b"HTTP/1.1 429 Too Many Requests\r\ncontent-length: 0\r\n\r\n")
                await writer.drain()
                return
            self.streams += 1
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
            sequence = 0
            while (phase := await self._phases.get()) is not None:
                sequence += 1
                status = {"phase": phase, "t0": None if phase == "running" else 1.0e9, "deadline": None}
                event = f": keep-alive\n\nid: {sequence}\nevent: {phase}\ndata: {json.dumps(status)}\n\n".encode()
                # Split inside a line: a follower must not take a chunk for a line.
                for part in (event[:7], event[7:]):
                    writer.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
                await writer.drain()
                if phase == "done":
                    break
            writer.write(b"0\r\n\r\n")
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._writers.discard(writer)
            self._handlers.discard(task)
            writer.close()


@contextlib.asynccontextmanager
async def event_stream(server: EventStreamServer) -> AsyncIterator[EventStreamServer]:
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    server.port = listener.sockets[0].getsockname()[1]
    try:
        yield server
    finally:
        listener.close()
        for _ in server._handlers:
            server.push(None)  # each waiting stream ends
        for writer in list(server._writers):
            writer.close()
        if server._handlers:
            await asyncio.wait(server._handlers, timeout=5.0)
        await listener.wait_closed()
