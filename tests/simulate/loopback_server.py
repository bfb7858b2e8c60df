"""Tiny HTTP/1.1 servers on 127.0.0.1 for the simulator's client and load generator: each answers
(or fails to) in one chosen way and records the request heads it read. Started inside the test's
own event loop; every connection is closed and every handler awaited on the way out."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

Behaviour = Callable[["LoopbackServer", asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class LoopbackServer:
    def __init__(self, behaviour: Behaviour) -> None:
        self.port = 0
        self.heads: list[bytes] = []
        self._behaviour = behaviour
        self._handlers: set[asyncio.Task[None]] = set()

    async def read_head(self, reader: asyncio.StreamReader) -> bytes:
        head = await reader.readuntil(b"\r\n\r\n")
        self.heads.append(head)
        return head

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            await self._behaviour(self, reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client gave up first
        finally:
            writer.close()
            self._handlers.discard(task)

    async def stop(self) -> None:
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)


@contextlib.asynccontextmanager
async def serving(behaviour: Behaviour) -> AsyncIterator[LoopbackServer]:
    server = LoopbackServer(behaviour)
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    server.port = listener.sockets[0].getsockname()[1]
    try:
        yield server
    finally:
        listener.close()
        await server.stop()
        await listener.wait_closed()


def answering(status: int, delay_seconds: float = 0.0) -> Behaviour:
    """Read the request head, wait `delay_seconds` (a slow app), answer `status`."""

    async def behave(server: LoopbackServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_head(reader)
        if delay_seconds:
            await asyncio.sleep(delay_seconds)
        writer.write(f"HTTP/1.1 {status} Whatever\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()

    return behave


async def closing_at_once(server: LoopbackServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Accept, then close without reading or answering (handle() closes)."""


async def never_answering(server: LoopbackServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Read the request, then say nothing until the client hangs up."""
    await server.read_head(reader)
    await reader.read()


async def answering_garbage(server: LoopbackServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await server.read_head(reader)
    writer.write(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
    await writer.drain()


def closed_port() -> int:
    """A loopback port nothing listens on: bound, read, closed."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port
