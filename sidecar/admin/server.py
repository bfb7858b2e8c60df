"""The admin server: the accept loop (sidecar.admin.listener) and the bounded httptools protocol
(sidecar.admin.protocol) on one socket bound before anything starts, served until stop(), then
closed within STOP_GRACE_SECONDS. Signals, timing and exit are the shutdown sequence's. uvicorn's
Server is not used: it installs SIGINT/SIGTERM handlers and re-raises the signal when it stops, its
main loop wakes at 10 Hz, its shutdown sleeps 0.1 s and polls connections, and its module imports
email, platform and random for a date header, a banner and max-requests jitter the admin port has no
use for. Of uvicorn only the httptools protocol is used; tests/admin/test_server.py fails when what
it reads of its server and config moves."""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections.abc import Iterable
from typing import Any, Final

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp

from sidecar.admin.listener import AdminListener
from sidecar.admin.probes import ProbeFastPath
from sidecar.admin.protocol import KEEP_ALIVE_SECONDS, AdminConnections, BoundedHttpToolsProtocol

DUAL_STACK_HOST: Final = "::"
IPV4_ANY_HOST: Final = "0.0.0.0"
# After the report, open requests get this long to finish before they are cancelled.
STOP_GRACE_SECONDS: Final = 0.05


class AdminConfig:
    """The settings uvicorn's httptools protocol reads, as the admin port uses them: no TLS, no
    WebSockets, no proxy headers, no concurrency limit. uvicorn.Config would offer all of those,
    and cost every start the imports of ssl and logging.config (sidecar.lean_imports)."""

    loaded = True
    root_path = ""
    asgi_version = "3.0"
    ws_protocol_class = None  # ws="none": an upgrade request is answered as plain HTTP
    # uvicorn's own limit answers 503 to everything, probes included, once reached; ours evicts.
    limit_concurrency = None
    reset_contextvars = False

    def __init__(
        self, app: ASGIApp, http_protocol_class: type[BoundedHttpToolsProtocol], timeout_keep_alive: int
    ) -> None:
        # Nothing proxies the admin port (probes and hooks come from the kubelet, to the pod IP):
        # no X-Forwarded-* middleware may rewrite the client or sit between a probe and its answer.
        self.loaded_app = app
        self.http_protocol_class = http_protocol_class
        self.timeout_keep_alive = timeout_keep_alive

    def load(self) -> None:
        """Everything is built in __init__ (the protocol calls this when `loaded` is false)."""


class ServerState:
    """What the httptools protocol shares with its server (the fields of uvicorn's ServerState):
    the open connections, the requests' tasks, a count, and the headers added to every answer
    (none: probes need no server or date header, so nothing has to tick to keep a date fresh)."""

    def __init__(self) -> None:
        self.total_requests = 0
        self.connections: set[BoundedHttpToolsProtocol] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.default_headers: list[tuple[bytes, bytes]] = []


class AdminServer:
    """Serves `config`'s app from serve() until stop(); `listening` is set once it accepts."""

    def __init__(self, config: AdminConfig) -> None:
        self.config = config
        self.server_state = ServerState()
        self.app_state: dict[str, Any] = {}  # no lifespan: the `state` of every request, empty
        self.listener: AdminListener | None = None
        self.listening = asyncio.Event()
        self._stop = asyncio.Event()

    async def serve(self, sockets: list[socket.socket]) -> None:
        """Accept on the one bound, listening socket in `sockets` until stop(), then shut down.
        Raises ValueError for any other number of sockets."""
        if len(sockets) != 1:
            raise ValueError("the admin server serves exactly one bound socket")
        self.listener = AdminListener(
            sockets[0], self._create_protocol, self.config.http_protocol_class.admin_connections
        )
        self.listener.start()
        self.listening.set()
        try:
            await self._stop.wait()  # events only: nothing ticks or polls while the sidecar is idle
        finally:
            await self.shutdown()

    def _create_protocol(self) -> asyncio.Protocol:
        # AdminConfig and ServerState have what the protocol reads of uvicorn's Config and ServerState.
        config: Any = self.config
        state: Any = self.server_state
        return self.config.http_protocol_class(config=config, server_state=state, app_state=self.app_state)

    def stop(self) -> None:
        self._stop.set()

    async def shutdown(self) -> None:
        """Stop accepting, close connections owed nothing, let the requests under way finish within
        STOP_GRACE_SECONDS, and cancel the rest."""
        if self.listener is not None:
            self.listener.close()
        for connection in list(self.server_state.connections):
            if connection.is_evictable:
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

    # uvicorn's protocol logs a line per request to an access logger with a handler: not wanted.
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
