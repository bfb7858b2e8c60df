"""A keep-alive HTTP/1.1 server on 127.0.0.1 for the pool and traffic tests: answers every request
on a connection until told to close, and counts requests by connection. Started inside the test's
own event loop; every connection is closed on the way out."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator


class KeepAliveServer:
    """`close_after`: answer `Connection: close` (and close) on a connection's Nth request;
    `chunked`: send the body chunked instead of with a content-length."""

    def __init__(self, close_after: int | None = None, chunked: bool = False) -> None:
        self.port = 0
        self.close_after = close_after
        self.chunked = chunked
        self.requests_by_connection: list[int] = []
        self.writers: set[asyncio.StreamWriter] = set()
        self.handlers: set[asyncio.Task[None]] = set()

    @property
    def requests(self) -> int:
        return sum(self.requests_by_connection)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.handlers.add(task)
        index = len(self.requests_by_connection)
        self.requests_by_connection.append(0)
        self.writers.add(writer)
        try:
            while True:
                await reader.readuntil(b"\r\n\r\n")
                self.requests_by_connection[index] += 1
                closing = self.close_after is not None and self.requests_by_connection[index] >= self.close_after
                connection = b"close" if closing else b"keep-alive"
                if self.chunked:
                    body = b"transfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"
                else:
                    body = b"content-length: 2\r\n\r\nok"
                writer.write(b"HTTP/1.1 200 OK\r\nconnection: " + connection + b"\r\n" + body)
                await writer.drain()
                if closing:
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.writers.discard(writer)
            self.handlers.discard(task)
            writer.close()

    def close_connections(self) -> None:
        """The server closes every connection it holds (as an app does at its exit)."""
        for writer in list(self.writers):
            writer.close()


@contextlib.asynccontextmanager
async def keep_alive_serving(server: KeepAliveServer) -> AsyncIterator[KeepAliveServer]:
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    server.port = listener.sockets[0].getsockname()[1]
    try:
        yield server
    finally:
        listener.close()
        # Closing a connection ends its handler's read: awaited, not cancelled (a cancelled
        # stream handler is logged as an error by asyncio).
        server.close_connections()
        if server.handlers:
            await asyncio.wait(server.handlers, timeout=5.0)
        await listener.wait_closed()
