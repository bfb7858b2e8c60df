"""The uvicorn server that leaves signals, timing and exit to us. uvicorn's Server.serve() installs
its own SIGINT/SIGTERM handlers and re-raises the signal when it stops, its main loop wakes at
10 Hz, and its shutdown sleeps 0.1 s and polls connections; each is replaced here. These hooks are
uvicorn internals: pyproject pins the range, and tests/test_admin_server.py fails when they move."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Generator
from typing import Final

import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

# A connection must deliver a request's headers this soon after it opens (or after the previous
# response): a slow client (slowloris) then holds a connection slot for seconds, not forever.
HEADER_TIMEOUT_SECONDS: Final = 5.0
# Connections beyond this get 503 from uvicorn; 64 prestop waiters + probes + scrapes fit easily.
MAX_CONNECTIONS: Final = 512
# After the report, open requests get this long to finish before they are cancelled.
STOP_GRACE_SECONDS: Final = 0.05


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """httptools protocol with a header-read timeout, which uvicorn does not have."""

    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm_header_timer()

    def on_headers_complete(self) -> None:
        self._cancel_header_timer()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def _arm_header_timer(self) -> None:
        self._cancel_header_timer()
        self._header_timer = self.loop.call_later(HEADER_TIMEOUT_SECONDS, self._close_slow_connection)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _close_slow_connection(self) -> None:
        self._header_timer = None
        # Between requests on a keep-alive connection the keep-alive timeout applies instead.
        between_requests = self.cycle is None or self.cycle.response_complete
        if between_requests and self.timeout_keep_alive_task is None and not self.transport.is_closing():
            self.transport.close()


class AdminServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._stop = asyncio.Event()
        self.listening = asyncio.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.listening.set()

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # Signals belong to the shutdown sequence (sidecar.signals); uvicorn must neither
        # install handlers nor re-raise a captured signal when it returns.
        yield

    async def main_loop(self) -> None:
        # No date header (probes do not need one), so nothing has to tick: sleep until told.
        self.server_state.default_headers = list(self.config.encoded_headers)
        await self._stop.wait()

    def stop(self) -> None:
        self._stop.set()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()
        for connection in list(self.server_state.connections):
            connection.shutdown()  # idle keep-alive connections close now, busy ones after the response
        tasks = list(self.server_state.tasks)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=STOP_GRACE_SECONDS)
            for task in pending:
                task.cancel()


def build_config(app: ASGIApp) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        http=BoundedHttpToolsProtocol,
        lifespan="off",
        log_config=None,
        log_level="warning",  # uvicorn sets its loggers to this; its info chatter is noise next to ours
        access_log=False,
        server_header=False,
        date_header=False,
        limit_concurrency=MAX_CONNECTIONS,
        timeout_keep_alive=5,
        ws="none",
    )


def bind_admin_socket(host: str, port: int) -> socket.socket:
    """Bind and listen before anything starts, so a port in use is a start-up error (exit 2)
    rather than a server that never answers. Raises OSError."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP, not the default 0: asyncio sets TCP_NODELAY on accepted connections only
    # when it sees a TCP socket, and without it a probe answer written in two parts waits for a
    # delayed ACK (40 ms).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)  # "::" serves IPv4 probes too
        sock.bind((host, port))
        sock.listen(2048)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock
