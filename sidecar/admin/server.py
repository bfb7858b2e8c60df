"""The uvicorn server that leaves signals, timing and exit to us. uvicorn's Server.serve() installs
its own SIGINT/SIGTERM handlers and re-raises the signal when it stops, its main loop wakes at
10 Hz, and its shutdown sleeps 0.1 s and polls connections; each is replaced here. These hooks are
uvicorn internals: pyproject pins the range, and tests/admin/test_server.py fails when they move."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
from collections.abc import Generator, Iterable
from typing import Final, cast

import uvicorn
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp
from uvicorn.lifespan.off import LifespanOff

from sidecar.admin.listener import AdminListener
from sidecar.admin.probes import ProbeFastPath
from sidecar.admin.protocol import KEEP_ALIVE_SECONDS, AdminConnections, BoundedHttpToolsProtocol

DUAL_STACK_HOST: Final = "::"
IPV4_ANY_HOST: Final = "0.0.0.0"
# After the report, open requests get this long to finish before they are cancelled.
STOP_GRACE_SECONDS: Final = 0.05


class AdminConfig:
    """The settings uvicorn's Server and httptools protocol read, as the admin port uses them: no
    TLS, no lifespan, no WebSockets, no proxy headers, no server or date header, no concurrency
    limit. uvicorn.Config would offer all of those, and cost every start the imports of ssl and
    logging.config (sidecar.admin.uvicorn_core)."""

    loaded = True
    root_path = ""
    asgi_version = "3.0"
    ws_protocol_class = None  # ws="none": an upgrade request is answered as plain HTTP
    lifespan_class = LifespanOff
    # uvicorn's own limit answers 503 to everything, probes included, once reached; ours evicts.
    limit_concurrency = None
    reset_contextvars = False
    encoded_headers: list[tuple[bytes, bytes]] = []  # noqa: RUF012 (read only)

    def __init__(self, app: ASGIApp, http_protocol_class: type[asyncio.Protocol], timeout_keep_alive: int) -> None:
        # Nothing proxies the admin port (probes and hooks come from the kubelet, to the pod IP):
        # no X-Forwarded-* middleware may rewrite the client or sit between a probe and its answer.
        self.loaded_app = app
        self.http_protocol_class = http_protocol_class
        self.timeout_keep_alive = timeout_keep_alive

    def load(self) -> None:
        """Everything is built in __init__ (uvicorn's Server calls this before serving)."""


class AdminServer(uvicorn.Server):
    def __init__(self, config: AdminConfig) -> None:
        super().__init__(config)  # type: ignore[arg-type]  # what Server reads of a uvicorn.Config
        self.listener: AdminListener | None = None
        self._stop = asyncio.Event()
        self.listening = asyncio.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        # Our own accept loop (sidecar.admin.listener) instead of loop.create_server's; no lifespan.
        config = cast(AdminConfig, self.config)
        if sockets is None or len(sockets) != 1:
            raise ValueError("the admin server serves exactly one bound socket")

        def create_protocol() -> asyncio.Protocol:
            protocol: asyncio.Protocol = config.http_protocol_class(  # type: ignore[call-arg]
                config=config, server_state=self.server_state, app_state=self.lifespan.state
            )
            return protocol

        protocol_class = config.http_protocol_class
        # build_config's protocol class carries the connection table the listener evicts from.
        connections = (
            protocol_class.admin_connections
            if issubclass(protocol_class, BoundedHttpToolsProtocol)
            else AdminConnections()
        )
        self.listener = AdminListener(sockets[0], create_protocol, connections)
        self.listener.start()
        self.started = True
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
        if self.listener is not None:
            self.listener.close()
        for connection in list(self.server_state.connections):
            if isinstance(connection, BoundedHttpToolsProtocol) and connection.is_evictable:
                # Owed nothing (idle, or still sending): closed now, so a handler waiting for its
                # body sees a disconnect and returns, instead of being cancelled below and logging
                # a traceback, a thousand of them under a slow-body attack, past the deadline.
                connection.abort("shutdown")
            else:
                connection.shutdown()  # busy connections close after their response
        tasks = list(self.server_state.tasks)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=STOP_GRACE_SECONDS)
            for task in pending:
                task.cancel()


def build_config(app: ASGIApp, connections: AdminConnections | None = None) -> AdminConfig:
    """`connections`: the cap and close counts of this server's connections (a fresh, default one
    when not given)."""

    table = AdminConnections() if connections is None else connections  # an empty table is falsy

    class Protocol(BoundedHttpToolsProtocol):
        admin_connections = table
        # Probes without a query are answered by the protocol itself: no ASGI request, no task.
        probes = app if isinstance(app, ProbeFastPath) else None

    # uvicorn logs its start-up chatter at info, and an access line per request: neither is wanted.
    logging.getLogger("uvicorn.error").setLevel(logging.WARNING)
    access = logging.getLogger("uvicorn.access")
    access.setLevel(logging.WARNING)
    access.handlers, access.propagate = [], False
    return AdminConfig(app, Protocol, KEEP_ALIVE_SECONDS)


class AdminConnectionsCollector(Collector):
    """The admin port's connections, read at scrape time: how many are open, and how many the
    server closed and why (an attack or a broken client shows here before probes suffer)."""

    def __init__(self, connections: AdminConnections) -> None:
        self.connections = connections

    def collect(self) -> Iterable[Metric]:
        yield GaugeMetricFamily(
            "sidecar_admin_connections", "Open connections to the admin port", value=len(self.connections)
        )
        closed = CounterMetricFamily(
            "sidecar_admin_connections_closed",
            "Admin port connections closed by the server, by reason",
            labels=["reason"],
        )
        for reason, count in self.connections.closed.items():
            closed.add_metric([reason], count)
        yield closed


def bind_admin_socket(host: str, port: int) -> socket.socket:
    """Bind and listen before anything starts, so a port in use is a start-up error (exit 2)
    rather than a server that never answers. DUAL_STACK_HOST listens on both families, or on IPv4
    alone where the kernel has no IPv6 (an IPv6-only cluster needs the first, a kernel booted
    with ipv6.disable=1 the second). Raises OSError."""
    try:
        return bind_listener(host, port)
    except OSError as exc:
        if host != DUAL_STACK_HOST or exc.errno not in (errno.EAFNOSUPPORT, errno.EADDRNOTAVAIL):
            raise
    return bind_listener(IPV4_ANY_HOST, port)


def bind_listener(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP, not the default 0: asyncio sets TCP_NODELAY on accepted connections only
    # when it sees a TCP socket, and without it a probe answer written in two parts waits for a
    # delayed ACK (40 ms).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            # "::" serves IPv4 probes too (as ::ffff:a.b.c.d), whatever the sysctl bindv6only says.
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind((host, port))
        sock.listen(2048)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock
