"""The admin port's HTTP/1.1 protocol, bounded so that no client can silence the probes: every
connection state has a timeout, a request's head and body have byte caps, and open connections
have a cap kept by evicting the oldest connection that is not owed a response. It only guards
connections; what a request means is sidecar.admin.routes's business. Built on uvicorn's httptools
protocol (internals: tests/admin/test_server.py fails when the hooks used here move)."""

from __future__ import annotations

import asyncio
import collections
import resource

# uvicorn's httptools protocol calls urllib.parse.unquote for a path with '%' but imports only
# `urllib`: the submodule must be loaded by someone, and start-up no longer guarantees it does.
import urllib.parse  # noqa: F401
from typing import Final

import httptools
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from sidecar.admin.probes import ProbeFastPath

# Kubelet probes send about 150 bytes of head, Prometheus about 300: 16 KiB is generous, and a
# 50 MB header is refused (431) after 16 KiB instead of being buffered whole by the parser.
MAX_HEAD_BYTES: Final = 16 * 1024
# /drain's JSON is tens of bytes; no admin endpoint takes more (413 on every path).
MAX_BODY_BYTES: Final = 8192
# A request's head and body must arrive this soon after its first byte (or after the connection
# opens): a client that trickles a byte a second holds a slot for seconds, not forever.
REQUEST_TIMEOUT_SECONDS: Final = 5.0
KEEP_ALIVE_SECONDS: Final = 5
# After an error answer the client may still be sending; its bytes are read and dropped for this
# long (at most LINGER_MAX_BYTES) so that closing with unread input does not reset the
# connection and destroy the answer before the client reads it.
LINGER_SECONDS: Final = 1.0
LINGER_MAX_BYTES: Final = 1024 * 1024
# Past this many open connections the oldest idle or stalled one is closed for each new one, so a
# fresh probe is always served; the cap bounds memory (about 10 KB a connection) and file
# descriptors. When none can be closed (a burst of requests all being answered at once), a newcomer
# is still admitted, up to OVERFLOW_FACTOR times the cap: it may be the kubelet's probe, and those
# answers are moments away, after which newcomers evict again.
MAX_CONNECTIONS: Final = 1024
OVERFLOW_FACTOR: Final = 2
# File descriptors kept for everything else: the listener, the termination log, sinks, /proc reads.
RESERVED_FDS: Final = 64

# Why connections were closed by the server, for sidecar_admin_connections_closed_total{reason}.
CLOSE_REASONS: Final = (
    "evicted",
    "refused",
    "request_timeout",
    "head_too_large",
    "body_too_large",
    "body_unread",
    "bad_request",
    "shutdown",
)


def raise_fd_limit() -> int:
    """Raise the soft file-descriptor limit to the hard one (allowed without privileges) and return
    the soft limit now in force. The connection cap is then fitted under it (connection_cap), so an
    accept never fails for want of a descriptor: asyncio would stop accepting for a second."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        wanted = 1 << 20 if hard == resource.RLIM_INFINITY else hard
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
        except (ValueError, OSError):
            pass
    return soft


def connection_cap(fd_limit: int) -> int:
    """MAX_CONNECTIONS, or fewer when the descriptor limit cannot hold the overflow above it and
    the reserve."""
    return max(1, min(MAX_CONNECTIONS, (fd_limit - RESERVED_FDS) // OVERFLOW_FACTOR))


class AdminConnections:
    """The open connections of one server, oldest first, and why the server closed the others."""

    def __init__(self, max_connections: int = MAX_CONNECTIONS) -> None:
        self.max_connections = max_connections
        self.closed: collections.Counter[str] = collections.Counter({reason: 0 for reason in CLOSE_REASONS})
        self._open: dict[BoundedHttpToolsProtocol, None] = {}
        # Every connection taken from the kernel, refused ones too: the admin port's share of the
        # network namespace's TcpPassiveOpens (sidecar.drain.arrivals counts the app's from it).
        self.accepted = 0

    def __len__(self) -> int:
        return len(self._open)

    def admit(self, protocol: BoundedHttpToolsProtocol) -> bool:
        """Make room for `protocol`: at the cap the oldest connection not owed a response is
        closed; when every one is owed (answers under way), the newcomer is admitted over the cap,
        up to OVERFLOW_FACTOR times it. False (refuse the newcomer) only beyond that."""
        self.accepted += 1
        at_cap = len(self._open) >= self.max_connections
        if at_cap and not self.evict_oldest() and len(self._open) >= self.max_connections * OVERFLOW_FACTOR:
            self.closed["refused"] += 1
            return False
        self._open[protocol] = None
        return True

    def evict_oldest(self) -> bool:
        """Close the oldest connection not owed a response; False when every one is owed."""
        victim = next((candidate for candidate in self._open if candidate.is_evictable), None)
        if victim is None:
            return False
        victim.abort("evicted")
        return True

    def forget(self, protocol: BoundedHttpToolsProtocol) -> None:
        self._open.pop(protocol, None)


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with timeouts for every connection state and byte caps.
    build_config() makes a subclass bound to one server's AdminConnections."""

    admin_connections: AdminConnections = AdminConnections()

    _request_timer: asyncio.TimerHandle | None = None
    _linger_timer: asyncio.TimerHandle | None = None
    _reading_head = True
    _head_bytes = 0
    _body_bytes = 0
    _lingering = False
    _lingered_bytes = 0
    # The probe fast path (build_config), and a probe's answer waiting for its message to end.
    probes: ProbeFastPath | None = None
    _direct_answer: bytes | None = None
    _direct_keep_alive = True

    @property
    def is_evictable(self) -> bool:
        """Not owed a response: idle, still sending, done, or not reading what it is sent."""
        cycle = self.cycle
        owed = cycle is not None and not cycle.more_body and not cycle.response_complete
        return not owed or self._lingering or self.flow.write_paused

    # --- connection -----------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if not self.admin_connections.admit(self):
            self.connections.discard(self)
            transport.abort()
            return
        self._arm_request_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self.admin_connections.forget(self)
        for timer in (self._request_timer, self._linger_timer):
            if timer is not None:
                timer.cancel()
        super().connection_lost(exc)

    def abort(self, reason: str) -> None:
        """Close at once, unsent output dropped: for connections that are not reading anyway."""
        self.admin_connections.forget(self)
        self.admin_connections.closed[reason] += 1
        self.transport.abort()

    # --- input ----------------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._lingering:
            self._lingered_bytes += len(data)
            if self._lingered_bytes > LINGER_MAX_BYTES:
                self.transport.abort()
            return
        self._unset_keepalive_if_required()
        while data and not self._lingering and not self.transport.is_closing():
            if not self._reading_head:
                self._feed(data)
                return
            # Feed no more of a head than the cap: the parser buffers a header until it ends.
            room = MAX_HEAD_BYTES - self._head_bytes
            part, data = data[:room], data[room:]
            self._head_bytes += len(part)
            self._feed(part)
            if self._reading_head and self._head_bytes >= MAX_HEAD_BYTES:
                self._reject(431, "head_too_large", "request head over 16384 bytes")

    def _feed(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            pass  # no upgrades here (ws="none"): the request was answered as plain HTTP
        except httptools.HttpParserError:
            # Malformed input gets 400 at once; not logged, or any client could flood the log.
            if not self._lingering:
                self._reject(400, "bad_request", "invalid HTTP request")

    # --- parser callbacks -----------------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._reading_head = True
        self._body_bytes = 0
        self._arm_request_timer()

    def on_url(self, url: bytes) -> None:
        if not self._lingering:
            super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self._lingering:
            super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._reading_head = False
        self._head_bytes = 0
        if self._lingering:
            return
        declared = next((value for name, value in self.headers if name == b"content-length"), b"0")
        if not declared.isdigit() or int(declared) > MAX_BODY_BYTES:
            # Refused before the app runs; httptools itself rejects a malformed Content-Length.
            self._reject(413, "body_too_large", f"request body over {MAX_BODY_BYTES} bytes")
            return
        if self.probes is not None and declared == b"0" and self._is_first_in_line():
            self._direct_keep_alive = self.parser.get_http_version() != "1.0" and self.parser.should_keep_alive()
            self._direct_answer = self.probes.raw_answer(self.parser.get_method(), self.url, self._direct_keep_alive)
            if self._direct_answer is not None:
                return  # written whole at the message's end, without an ASGI request
        super().on_headers_complete()

    def _is_first_in_line(self) -> bool:
        """Nothing is being answered on this connection (answers go out in request order), and the
        request has no body and asks for no upgrade."""
        cycle = self.cycle
        if (cycle is not None and not cycle.response_complete) or self.pipeline or self.parser.should_upgrade():
            return False
        return all(name != b"transfer-encoding" for name, _ in self.headers)

    def on_body(self, body: bytes) -> None:
        if self._lingering:
            return
        self._body_bytes += len(body)
        if self._body_bytes > MAX_BODY_BYTES:  # a chunked body has no Content-Length to check
            self._reject(413, "body_too_large", f"request body over {MAX_BODY_BYTES} bytes")
            return
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._reading_head = True
        self._cancel_request_timer()
        answer, self._direct_answer = self._direct_answer, None
        if answer is not None:
            self._answer_directly(answer)
        elif not self._lingering:
            super().on_message_complete()

    def _answer_directly(self, answer: bytes) -> None:
        """Write a probe's answer and go on as uvicorn does after a response (on_response_complete)."""
        self.transport.write(answer)
        self.server_state.total_requests += 1
        if not self._direct_keep_alive:
            self.transport.close()
            return
        self._unset_keepalive_if_required()
        self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive, self.timeout_keep_alive_handler)

    def on_response_complete(self) -> None:
        cycle = self.cycle
        if cycle is not None and cycle.more_body and not self.transport.is_closing():
            # Answered before its body arrived (a probe with a body, a 401): what still comes
            # is read by nobody, so a client trickling it must not hold the connection.
            self.server_state.total_requests += 1
            self._linger("body_unread")
            return
        super().on_response_complete()

    # --- timers and endings ---------------------------------------------------------------------

    def _arm_request_timer(self) -> None:
        self._cancel_request_timer()
        self._request_timer = self.loop.call_later(REQUEST_TIMEOUT_SECONDS, self._request_timed_out)

    def _cancel_request_timer(self) -> None:
        if self._request_timer is not None:
            self._request_timer.cancel()
            self._request_timer = None

    def _request_timed_out(self) -> None:
        self._request_timer = None
        if not self.transport.is_closing():
            # A handler reading the body sees a disconnect; nothing was owed to this client yet.
            self.abort("request_timeout")

    def _reject(self, status: int, reason: str, message: str) -> None:
        """Answer `status` (unless a response is already under way) and close after lingering."""
        cycle = self.cycle
        if cycle is not None and cycle.response_started and not cycle.response_complete:
            self.abort(reason)
            return
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True  # the handler, if any, must not answer after us
            cycle.message_event.set()
        body = message.encode()
        self.transport.write(
            b"".join(
                [
                    STATUS_LINE[status],
                    b"content-type: text/plain; charset=utf-8\r\n",
                    b"content-length: %d\r\n" % len(body),
                    b"connection: close\r\n\r\n",
                    body,
                ]
            )
        )
        self._linger(reason)

    def _linger(self, reason: str) -> None:
        self.admin_connections.closed[reason] += 1
        self._lingering = True
        self._cancel_request_timer()
        self._unset_keepalive_if_required()
        self.flow.resume_reading()
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self._linger_timer = self.loop.call_later(LINGER_SECONDS, self.transport.close)
