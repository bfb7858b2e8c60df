"""SidecarWSGIMiddleware: a WSGI app's side of its pod's shutdown (gunicorn sync/gthread, any
threaded WSGI server). Counts requests in flight and requests started (the kubelet's probes left
out of the latter), reports them fire-and-forget, follows /events in
a thread; never delays or fails a request. Imports no server."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import Any, Final, Protocol

from sidecar.integrations import shutdown_state, usable_sidecar_url
from sidecar.integrations.events import ShutdownState
from sidecar.integrations.follower import follow_in_thread
from sidecar.integrations.report_connection import TIMEOUT_SECONDS
from sidecar.integrations.reporter import DrainReporter, is_kubelet_probe

ENVIRON_KEY: Final = "sidecar.shutdown"  # the ShutdownState, in every request's environ

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]


class StartResponse(Protocol):
    def __call__(
        self, status: str, headers: list[tuple[str, str]], exc_info: ExcInfo | None = ..., /
    ) -> Callable[[bytes], object]: ...


WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class SidecarWSGIMiddleware:
    """`SidecarWSGIMiddleware(app)`; the sidecar at `sidecar_url`, else $SHUTDOWN_SIDECAR_URL, else
    http://127.0.0.1:9180 (one that is not an http:// URL is warned about once, and the app is
    served without the sidecar). One per process: each worker reports on its own, its PID as its id.
    `at_t0` runs once when shutdown starts (gunicorn's config sets keepalive 0 there). Handlers
    find the ShutdownState at environ["sidecar.shutdown"]: `state.is_started`, `state.is_stopping`,
    `state.seconds_left()`."""

    def __init__(
        self,
        app: WSGIApp,
        *,
        sidecar_url: str | None = None,
        token: str | None = None,
        state: ShutdownState | None = None,
        at_t0: Callable[[], None] | None = None,
    ) -> None:
        self.app = app
        self.url = usable_sidecar_url(sidecar_url)  # None: serve without the sidecar
        self.shutdown: ShutdownState = shutdown_state() if state is None else state
        self.reporter = DrainReporter(self.url, token=token, counts_requests=True)
        self.inflight = 0
        self._at_t0 = at_t0
        self._lock = threading.Lock()
        self._is_started = False

    def start(self) -> None:
        """Follow the events and say this worker is here (`inflight` 0), so that the sidecar waits
        for it; idempotent. Otherwise done at the first request."""
        with self._lock:
            if not self._is_started:
                self._is_started = True
                if self.url is not None:
                    follow_in_thread(self.url, self.shutdown, self._at_t0)
                self.reporter.set_inflight(self.inflight)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if not self._is_started:
            self.start()
        environ[ENVIRON_KEY] = self.shutdown
        self._count(+1, is_start=not is_kubelet_probe(environ.get("HTTP_USER_AGENT", "")))
        try:
            body = self.app(environ, start_response)
        except BaseException:
            self._count(-1)
            raise
        # A streamed body is still in flight until the server closes it (PEP 3333).
        return CountedBody(body, lambda: self._count(-1))

    def _count(self, change: int, *, is_start: bool = False) -> None:
        with self._lock:  # gthread calls from several threads; the reporter only stores the values
            self.inflight += change
            if is_start:
                self.reporter.request_started()
            self.reporter.set_inflight(self.inflight)

    def finish(self, flush_seconds: float = TIMEOUT_SECONDS) -> None:
        """As the worker exits: `complete` during the pod's shutdown, else `exit` (a worker recycled
        on its own); then wait at most `flush_seconds` (default one try's timeout) for the send
        (the thread is a daemon)."""
        self.reporter.report_event("complete" if self.shutdown.is_started else "exit")
        self.reporter.flush(flush_seconds)


class CountedBody:
    """The app's body, with `on_close` called once when the server closes it. (A body that is the
    server's `wsgi.file_wrapper` loses its sendfile fast path: it is iterated instead.)"""

    def __init__(self, body: Iterable[bytes], on_close: Callable[[], None]) -> None:
        self._body = body
        self._on_close: Callable[[], None] | None = on_close

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._body)

    def close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            on_close, self._on_close = self._on_close, None
            if on_close is not None:
                on_close()
