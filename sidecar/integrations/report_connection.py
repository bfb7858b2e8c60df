"""The reporter's one HTTP/1.1 connection to its sidecar's admin port, kept open between reports: a
busy worker sends about ten a second, and a new connection for each cost the sidecar an accept, a
protocol set-up and a teardown every time. Used by the reporting thread only, never on the app's
request path; standard library only. It closes the connection once idle for IDLE_SECONDS, before
the admin server would, and sends a report that meets a connection the server closed (evicted at
its connection cap, or the sidecar restarted) once more on a new one."""

from __future__ import annotations

import http.client
import select
import socket
import time
from typing import Final

TIMEOUT_SECONDS: Final = 0.5  # each socket operation of a try
# The admin server closes a connection idle for its keep-alive timeout (5 s,
# sidecar.admin.protocol.KEEP_ALIVE_SECONDS; tests/integrations/test_report_connection.py checks
# this stays below it). Closing first, a second earlier, the reporter never sends into the
# server's close, and a worker that stops being busy holds no connection to the sidecar.
IDLE_SECONDS: Final = 4.0
# http.client writes a request's head and its body apart: corked (Linux), they leave as one segment
# and the sidecar reads each report at once (5-10% less of its CPU a report, measured here).
TCP_CORK: Final[int | None] = getattr(socket, "TCP_CORK", None)


class ReportConnection:
    """POSTs to (host, port) on one kept connection, opened when needed."""

    def __init__(self, host: str, port: int) -> None:
        self._host, self._port = host, port
        self._connection: http.client.HTTPConnection | None = None
        self._idle_since = 0.0  # time.monotonic() of the last answer read on the open connection

    @property
    def is_open(self) -> bool:
        return self._connection is not None and self._connection.sock is not None

    def seconds_until_idle(self) -> float | None:
        """How long until the open connection has been idle for IDLE_SECONDS; None when none is open."""
        if not self.is_open:
            return None
        return max(0.0, self._idle_since + IDLE_SECONDS - time.monotonic())

    def close_if_idle(self) -> None:
        if self.seconds_until_idle() == 0.0:
            self.close()

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> str | None:
        """One POST, each socket operation bounded by TIMEOUT_SECONDS; what went wrong, or None.
        A kept connection the server has closed is seen before sending when it can be (a FIN or a
        reset already arrived) and replaced; when the close crosses the request instead, the
        request goes once more on a new connection. A report sent twice is counted once: its
        in-flight count is absolute, its requests_started cumulative (sidecar.drain.request_starts
        diffs it) and an event is taken once per worker (sidecar.drain.app_report)."""
        self.close_if_idle()
        if self.is_open and self._is_closed_by_server():
            self.close()
        reused = self.is_open
        problem, is_closed_by_server = self._try(path, body, headers)
        if problem is not None and reused and is_closed_by_server:
            problem, _ = self._try(path, body, headers)
        return problem

    def _try(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[str | None, bool]:
        """(what went wrong or None, whether the server closed the connection under the request)."""
        if self._connection is None:
            self._connection = http.client.HTTPConnection(self._host, self._port, timeout=TIMEOUT_SECONDS)
        connection = self._connection
        try:
            send_request(connection, path, body, headers)
            response = connection.getresponse()
            answer = response.read()  # read whole: the connection is ready for the next request
        except (OSError, http.client.HTTPException) as exc:
            connection.close()
            # RemoteDisconnected (closed before an answer) is a ConnectionResetError; a timeout or
            # a refused connect is not a closed connection, and is not tried again.
            closed = isinstance(exc, ConnectionError) and not isinstance(exc, ConnectionRefusedError)
            return f"{type(exc).__name__}: {exc}", closed
        self._idle_since = time.monotonic()
        if response.status == 200:
            return None, False
        return f"POST {path} answered {response.status}: {answer[:200].decode(errors='replace')}", False

    def _is_closed_by_server(self) -> bool:
        """Whether the idle connection has something to read: the server's FIN or reset (it never
        speaks unasked). One poll() without waiting; select() would fail on a descriptor above 1023."""
        sock = self._connection.sock if self._connection is not None else None
        if sock is None:
            return True
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        return bool(poller.poll(0))


def send_request(connection: http.client.HTTPConnection, path: str, body: bytes, headers: dict[str, str]) -> None:
    """POST `path` on `connection` (connected first when it is not), head and body in one segment
    where the kernel can cork. Raises OSError or http.client.HTTPException."""
    if connection.sock is None:
        connection.connect()
    sock = connection.sock
    if TCP_CORK is not None:
        sock.setsockopt(socket.IPPROTO_TCP, TCP_CORK, 1)
    connection.request("POST", path, body, headers)
    if TCP_CORK is not None:
        sock.setsockopt(socket.IPPROTO_TCP, TCP_CORK, 0)  # sends what was held, at once
