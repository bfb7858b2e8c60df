"""SidecarMiddleware driven in-process with ASGI messages; the real-uvicorn behaviour is in
test_asgi_process.py."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from sidecar.integrations.asgi import SCOPE_KEY, SidecarMiddleware
from sidecar.integrations.events import ShutdownState
from tests.e2e.sidecar_process import wait_until
from tests.integrations.drain_recorder import DrainRecorder

Message = dict[str, Any]


async def hello(scope: dict[str, Any], receive: Any, send: Any) -> None:
    assert isinstance(scope[SCOPE_KEY], ShutdownState)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"hello"})


async def request(app: SidecarMiddleware, http_version: str = "1.1") -> list[Message]:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    async def send(message: Message) -> None:
        sent.append(message)

    await app({"type": "http", "http_version": http_version, "path": "/"}, receive, send)
    return sent


@pytest.mark.anyio
async def test_asgi_connection_close_only_from_t0_and_only_on_http_1_1() -> None:
    with DrainRecorder() as sidecar:
        state = ShutdownState()
        app = SidecarMiddleware(hello, sidecar_url=sidecar.url, state=state)
        assert (await request(app))[0]["headers"] == [(b"content-type", b"text/plain")]
        state.update("prestop_delay", {"t0": 1.0, "deadline": 31.0})
        assert (b"connection", b"close") in (await request(app))[0]["headers"]
        assert (b"connection", b"close") not in (await request(app, "1.0"))[0]["headers"]
        assert app.inflight == 0


@pytest.mark.anyio
async def test_asgi_a_request_that_came_before_t0_and_is_answered_after_it_closes_its_connection() -> None:
    answer = asyncio.Event()

    async def slow(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await answer.wait()
        await hello(scope, receive, send)

    with DrainRecorder() as sidecar:
        state = ShutdownState()
        app = SidecarMiddleware(slow, sidecar_url=sidecar.url, state=state)
        pending = asyncio.create_task(request(app))
        for _ in range(100):  # loop turns, not time: the request enters the app without waiting
            if app.inflight == 1:
                break
            await asyncio.sleep(0)
        assert app.inflight == 1
        state.update("prestop_delay", {"t0": 1.0, "deadline": 31.0})  # t0 while it is in flight
        answer.set()
        assert (b"connection", b"close") in (await asyncio.wait_for(pending, 5))[0]["headers"]


@pytest.mark.anyio
async def test_asgi_lifespan_shutdown_reports_complete_after_the_apps_own_shutdown() -> None:
    order: list[str] = []

    async def lifespan_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                order.append("app shutdown")
                await send({"type": "lifespan.shutdown.complete"})
                return

    with DrainRecorder() as sidecar:
        state = ShutdownState()
        app = SidecarMiddleware(lifespan_app, sidecar_url=sidecar.url, state=state)
        inbox: asyncio.Queue[Message] = asyncio.Queue()
        for message in ({"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}):
            inbox.put_nowait(message)

        async def send(message: Message) -> None:
            order.append(message["type"])

        state.update("drain", {"t0": 1.0, "deadline": 31.0})
        await app({"type": "lifespan"}, inbox.get, send)
        assert order == ["lifespan.startup.complete", "app shutdown", "lifespan.shutdown.complete"]
        wait_until(lambda: any(r.get("event") == "complete" for r in sidecar.reports), 10, what="complete")
        assert sidecar.reports[-1]["inflight"] == 0


async def refuses_lifespan(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Django's ASGIHandler, at a lifespan scope."""
    raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")


async def ignores_lifespan(scope: dict[str, Any], receive: Any, send: Any) -> None:
    return None


async def takes_startup_then_returns(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await receive()
    await send({"type": "lifespan.startup.complete"})


async def run_lifespan(app: Any, answered: list[str]) -> list[dict[str, Any]]:
    """The server's side: startup, then shutdown once started. `answered` gets what the app (or
    the middleware) answered; returns what the sidecar was told."""
    with DrainRecorder() as sidecar:
        state = ShutdownState()
        state.update("drain", {"t0": 1.0, "deadline": 31.0})
        inbox: asyncio.Queue[Message] = asyncio.Queue()
        inbox.put_nowait({"type": "lifespan.startup"})

        async def send(message: Message) -> None:
            answered.append(message["type"])
            if message["type"] == "lifespan.startup.complete":
                inbox.put_nowait({"type": "lifespan.shutdown"})

        await SidecarMiddleware(app, sidecar_url=sidecar.url, state=state)({"type": "lifespan"}, inbox.get, send)
        wait_until(lambda: sidecar.reports, 10, what="a report")
        return list(sidecar.reports)


@pytest.mark.anyio
@pytest.mark.parametrize(
    "app",
    [
        pytest.param(refuses_lifespan, id="raises-at-the-scope"),
        pytest.param(ignores_lifespan, id="returns-at-once"),
        pytest.param(takes_startup_then_returns, id="returns-after-startup"),
    ],
)
async def test_asgi_an_app_that_refuses_lifespan_gets_it_answered_and_completion_reported(app: Any) -> None:
    answered: list[str] = []
    reports = await run_lifespan(app, answered)
    assert answered == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert [report.get("event") for report in reports] == ["complete"]


async def startup_fails(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await receive()
    await send({"type": "lifespan.startup.failed", "message": "no database"})
    raise RuntimeError("no database")


async def startup_raises(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await receive()
    raise RuntimeError("no database")  # a startup that fails without saying startup.failed


async def crashes_after_startup(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await receive()
    await send({"type": "lifespan.startup.complete"})
    raise RuntimeError("lifespan task crashed")


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("app", "answer"),
    [
        pytest.param(startup_fails, "lifespan.startup.failed", id="startup-failed"),
        pytest.param(crashes_after_startup, "lifespan.startup.complete", id="error-after-startup"),
        pytest.param(startup_raises, None, id="error-in-startup"),
    ],
)
async def test_asgi_a_lifespan_error_after_the_apps_own_answer_stays_the_apps(app: Any, answer: str | None) -> None:
    answered: list[str] = []
    with pytest.raises(RuntimeError):
        await run_lifespan(app, answered)
    assert answered == ([] if answer is None else [answer])  # nothing answered in the app's place


@pytest.mark.anyio
async def test_asgi_a_worker_that_stops_outside_a_pod_shutdown_reports_exit() -> None:
    with DrainRecorder() as sidecar:
        app = SidecarMiddleware(hello, sidecar_url=sidecar.url, state=ShutdownState())
        await app.finish()
        wait_until(lambda: sidecar.reports, 10, what="a report")
        assert sidecar.reports[-1]["event"] == "exit"


@pytest.mark.anyio
async def test_asgi_websocket_is_closed_1001_at_the_stop_and_the_app_told_disconnect() -> None:
    state = ShutdownState()
    seen: list[Message] = []

    async def echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "websocket.accept"})
        while (message := await receive())["type"] != "websocket.disconnect":
            pass
        seen.append(message)

    app = SidecarMiddleware(echo, sidecar_url="http://127.0.0.1:9", state=state)
    sent: list[Message] = []
    client: asyncio.Queue[Message] = asyncio.Queue()
    client.put_nowait({"type": "websocket.connect"})

    async def send(message: Message) -> None:
        sent.append(message)

    task = asyncio.create_task(app({"type": "websocket", "path": "/ws"}, client.get, send))
    await asyncio.sleep(0)  # the app reaches its receive()
    assert app.inflight == 1
    state.update("drain", {})
    await asyncio.wait_for(task, 10)
    assert sent[-1] == {"type": "websocket.close", "code": 1001, "reason": "server shutting down"}
    assert seen == [{"type": "websocket.disconnect", "code": 1001}]
    assert app.inflight == 0


@pytest.mark.anyio
async def test_asgi_counts_requests_started_but_not_the_kubelets_probes() -> None:
    with DrainRecorder() as sidecar:
        app = SidecarMiddleware(hello, sidecar_url=sidecar.url, state=ShutdownState())
        probe = [(b"user-agent", b"kube-probe/1.31"), (b"accept", b"*/*")]
        for headers in ([(b"user-agent", b"curl/8.5.0")], probe, [], probe, [(b"user-agent", b"python-httpx/0.28")]):
            await app({"type": "http", "http_version": "1.1", "path": "/", "headers": headers}, receive_nothing, drop)
        assert await asyncio.to_thread(app.reporter.flush, 10)
    assert sidecar.reports[-1]["requests_started"] == 3  # five requests, two of them probes
    assert sidecar.reports[-1]["inflight"] == 0


async def receive_nothing() -> Message:
    return {"type": "http.request", "body": b""}


async def drop(message: Message) -> None:
    pass
