"""SidecarMiddleware: an ASGI app's side of its pod's shutdown. Counts requests in flight and
requests started, the kubelet's probes left out of the latter (HTTP and WebSocket), and reports
them to the sidecar, follows its /events to answer `Connection: close` from
t0 and close WebSockets (1001) at the stop, and reports completion at lifespan shutdown. Never
lets the sidecar delay or fail a request; imports no framework."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Final

from sidecar.integrations import shutdown_state, usable_sidecar_url
from sidecar.integrations.events import RUNNING, ShutdownEvents, ShutdownState, log_to_logging
from sidecar.integrations.reporter import DrainReporter, is_kubelet_probe

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

SCOPE_KEY: Final = "sidecar.shutdown"  # the ShutdownState, in every request's scope
GOING_AWAY: Final = 1001  # RFC 6455: the endpoint is going away (a server going down)


class SidecarMiddleware:
    """`SidecarMiddleware(app)`; the sidecar at `sidecar_url`, else $SHUTDOWN_SIDECAR_URL, else
    http://127.0.0.1:9180 (one that is not an http:// URL is warned about once, and the app is
    served without the sidecar). Handlers find the ShutdownState at scope["sidecar.shutdown"] (or
    `sidecar.integrations.shutdown_state()`): `await state.started.wait()`, `state.t0`,
    `state.deadline`, `state.seconds_left()`."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        sidecar_url: str | None = None,
        token: str | None = None,
        state: ShutdownState | None = None,
    ) -> None:
        """`token`: the sidecar's --admin-token (default $SHUTDOWN_SIDECAR_TOKEN); `state`: default
        this process's (sidecar.integrations.shutdown_state())."""
        self.app = app
        self.url = usable_sidecar_url(sidecar_url)  # None: serve without the sidecar
        self.shutdown: ShutdownState = shutdown_state() if state is None else state
        self.reporter = DrainReporter(self.url, token=token, counts_requests=True)
        self.inflight = 0
        self._is_following = False
        self._follower: asyncio.Task[None] | None = None
        self._idle: asyncio.Event | None = None  # made at lifespan shutdown, set when inflight is 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "websocket":
            await self._websocket(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self._is_following:
            self._follow()  # a server run without lifespan
        scope[SCOPE_KEY] = self.shutdown
        if scope.get("http_version") == "1.1":
            # From t0 each answer closes its connection (uvicorn and hypercorn honour the header),
            # so pooled clients reconnect to other pods while this one still serves. Decided when
            # the answer starts, so a request that came in before t0 and is answered after it
            # closes its connection too. Idle connections are left alone: closing one could race
            # a request being written on it.
            send = closing_from_t0(send, self.shutdown)
        self._entered(scope)
        try:
            await self.app(scope, receive, send)
        finally:
            self._left()

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope[SCOPE_KEY] = self.shutdown
        connection = PoliteWebSocket(receive, send, self.shutdown.stopping)
        self._entered(scope)
        try:
            await self.app(scope, connection.receive, connection.send)
        finally:
            connection.release()
            self._left()

    def _entered(self, scope: Scope) -> None:
        self.inflight += 1
        if not is_kubelet_probe(user_agent(scope)):
            self.reporter.request_started()
        self.reporter.set_inflight(self.inflight)

    def _left(self) -> None:
        self.inflight -= 1
        self.reporter.set_inflight(self.inflight)
        if self.inflight == 0 and self._idle is not None:
            self._idle.set()

    def _follow(self) -> None:
        self._is_following = True
        if self.url is not None:
            events = ShutdownEvents(self.url, state=self.shutdown)
            follow = self._follow_events(events)
            self._follower = asyncio.get_running_loop().create_task(follow, name="sidecar-events")
            self.reporter.set_inflight(self.inflight)  # this worker is here: the sidecar awaits its `complete`

    async def _follow_events(self, events: ShutdownEvents) -> None:
        """The events, and at t0 this worker's count once more: if the sidecar was not up yet when
        the app started, it learns now, before the stop, that this app will say `complete` (and
        ends the drain then, not when the listener closes)."""
        at_t0 = asyncio.ensure_future(self._report_at_t0())
        try:
            await events.follow()
        finally:
            at_t0.cancel()

    async def _report_at_t0(self) -> None:
        await self.shutdown.started.wait()
        self.reporter.set_inflight(self.inflight)

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The app's lifespan, passed through; when the app below refuses the protocol (Django's
        ASGI handler raises at a lifespan scope) or returns without finishing it, the middleware
        answers the server itself, so that the shutdown still ends with the completion report.
        A failure the app answered (startup.failed, shutdown.failed), an error once it has taken
        the startup message (its startup failing), or an error after its startup stays the
        app's: raised to the server as before (`--lifespan on` then stops uvicorn)."""
        exchange = LifespanExchange(receive, send, at_startup=self._at_lifespan_startup, at_shutdown=self.finish)
        try:
            await self.app(scope, exchange.receive, exchange.send)
        except Exception as exc:
            if exchange.answered or exchange.received:
                raise
            # The ASGI spec lets a server go on without lifespan when the app raises here; going
            # on with it instead is what reports the app's completion.
            log_to_logging("app refuses lifespan; SidecarMiddleware answers it", error=repr(exc))
        await exchange.finish()

    def _at_lifespan_startup(self) -> None:
        if not self._is_following:
            self._follow()

    async def finish(self) -> None:
        """Report `complete` (or `exit` when no shutdown of the pod has begun: a worker restarted
        on its own) once nothing is in flight, waiting no longer than the sidecar's deadline less
        its report reserve; then stop following the events."""
        if self.inflight:
            self._idle = asyncio.Event()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.shutdown.seconds_left(self.shutdown.report_reserve_seconds) or 0):
                    await self._idle.wait()
        self.reporter.set_inflight(self.inflight)
        self.reporter.report_event("complete" if self.shutdown.is_started else "exit", tasks=self.shutdown.tasks)
        if self._follower is not None:
            self._follower.cancel()
            await asyncio.gather(self._follower, return_exceptions=True)
        # The reporter's thread is a daemon: give it a bounded moment (one try's timeout) to send
        # before the exit.
        await asyncio.to_thread(self.reporter.flush)


class LifespanExchange:
    """One lifespan scope between the server and the app below the middleware: what the app has
    received and answered, so that `finish()` answers in its place what it left unanswered
    (https://asgi.readthedocs.io/en/latest/specs/lifespan.html)."""

    def __init__(
        self,
        receive: Receive,
        send: Send,
        *,
        at_startup: Callable[[], None],
        at_shutdown: Callable[[], Awaitable[None]],
    ) -> None:
        self._receive = receive
        self._send = send
        self._at_startup = at_startup
        self._at_shutdown = at_shutdown  # after the app's own shutdown: only then has it finished
        self.received: set[str] = set()
        self.answered: set[str] = set()

    async def receive(self) -> Message:
        message = await self._receive()
        self.received.add(message["type"])
        if message["type"] == "lifespan.startup":
            self._at_startup()
        return message

    async def send(self, message: Message) -> None:
        if message["type"] in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
            await self._at_shutdown()
        self.answered.add(message["type"])
        await self._send(message)

    async def finish(self) -> None:
        """Answer the startup and the shutdown the app left unanswered; nothing once it answered
        its shutdown or reported its startup failed."""
        if self.answered & {"lifespan.startup.failed", "lifespan.shutdown.complete", "lifespan.shutdown.failed"}:
            return
        if "lifespan.startup.complete" not in self.answered:
            while "lifespan.startup" not in self.received:
                await self.receive()
            await self.send({"type": "lifespan.startup.complete"})
        while "lifespan.shutdown" not in self.received:
            await self.receive()
        await self.send({"type": "lifespan.shutdown.complete"})


def user_agent(scope: Scope) -> str:
    """The request's User-Agent ("" without one); ASGI header names are lower-case bytes."""
    agent = next((value for name, value in scope.get("headers", ()) if name == b"user-agent"), b"")
    return bytes(agent).decode("latin-1")


def closing_from_t0(send: Send, shutdown: ShutdownState) -> Send:
    async def send_closing(message: Message) -> None:
        if message["type"] == "http.response.start" and shutdown.phase != RUNNING:
            headers = list(message.get("headers", ()))
            if not any(name.lower() == b"connection" for name, _ in headers):
                message = {**message, "headers": [*headers, (b"connection", b"close")]}
        await send(message)

    return send_closing


class PoliteWebSocket:
    """A WebSocket's receive and send, closed with 1001 (going away) at the stop: the app's pending
    receive() returns websocket.disconnect and the client gets a proper close frame, before the
    server's own stop (uvicorn's is 1012) would cut it."""

    def __init__(self, receive: Receive, send: Send, stopping: asyncio.Event) -> None:
        self._receive = receive
        self._send = send
        self._stopping = stopping
        self._pending: asyncio.Future[Message] | None = None  # kept across calls: no message is lost
        self._closed = False

    async def receive(self) -> Message:
        if self._closed:
            return {"type": "websocket.disconnect", "code": GOING_AWAY}
        if self._pending is None:
            self._pending = asyncio.ensure_future(self._receive())
        stop: asyncio.Future[Any] = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait((self._pending, stop), return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
        if self._pending.done():
            message, self._pending = self._pending.result(), None
            if message["type"] == "websocket.disconnect":
                self._closed = True
            return message
        self._closed = True
        with contextlib.suppress(Exception):  # the client may be gone already: nothing to close
            await self._send({"type": "websocket.close", "code": GOING_AWAY, "reason": "server shutting down"})
        return {"type": "websocket.disconnect", "code": GOING_AWAY}

    async def send(self, message: Message) -> None:
        if self._closed and message["type"] != "websocket.close":
            raise ConnectionResetError("the WebSocket was closed (1001) for the server's shutdown")
        if not (self._closed and message["type"] == "websocket.close"):
            await self._send(message)

    def release(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
