"""The probe fast path: its answers through httpx's ASGI transport (pure route logic), and the
turns other requests take, counted in event-loop turns."""

from __future__ import annotations

import asyncio
import collections

import httpx
import pytest
from starlette.responses import PlainTextResponse
from starlette.types import Message, Receive, Scope, Send

from sidecar.admin.probes import PROBE_PATHS, REQUESTS_PER_TURN, ProbeFastPath, first_failure
from sidecar.parts import ReadinessCheck


def client_for(readiness: dict[str, ReadinessCheck], liveness: dict[str, ReadinessCheck]) -> httpx.AsyncClient:
    app = ProbeFastPath(PlainTextResponse("routed"), readiness, liveness)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sidecar")


def passing() -> str | None:
    return None


def failing() -> str | None:
    return "not listening"


def test_probes_first_failure_names_the_first_failing_check_in_order() -> None:
    assert first_failure({"a": passing, "b": passing}) is None
    assert first_failure({"a": passing, "b": failing, "c": lambda: "later"}) == "b: not listening"


@pytest.mark.anyio
@pytest.mark.parametrize("path", sorted(PROBE_PATHS))
async def test_probes_answer_ok_when_every_check_passes(path: str) -> None:
    async with client_for({"shutdown": passing}, {"app": passing}) as client:
        response = await client.get(path)
    assert (response.status_code, response.text) == (200, "ok")
    assert response.headers["content-type"] == "text/plain; charset=utf-8"


@pytest.mark.anyio
async def test_probes_readyz_and_livez_answer_503_with_the_failing_check() -> None:
    async with client_for({"app_port": failing}, {"app": failing}) as client:
        ready, live, started = [await client.get(path) for path in ("/readyz", "/livez", "/startupz")]
    assert (ready.status_code, ready.text) == (503, "app_port: not listening")
    assert (live.status_code, live.text) == (503, "app: not listening")
    assert started.status_code == 200  # answered at all means started


@pytest.mark.anyio
async def test_probes_head_is_answered_and_other_methods_are_405() -> None:
    async with client_for({}, {}) as client:
        assert (await client.head("/readyz")).status_code == 200
        assert (await client.post("/livez")).status_code == 405


@pytest.mark.anyio
@pytest.mark.parametrize("path", ["/livez?verbose", "/startupz?x=1"])
async def test_probes_a_query_on_livez_or_startupz_is_ignored(path: str) -> None:
    """Only /readyz has a verbose route: a query elsewhere got 404, a restart for a liveness probe."""
    async with client_for({}, {"app": failing}) as client:
        response = await client.get(path)
    assert response.status_code == (503 if path.startswith("/livez") else 200)
    assert response.text != "routed"


@pytest.mark.anyio
@pytest.mark.parametrize("path", ["/readyz?verbose", "/readyz?x=1", "/status", "/livez/"])
async def test_probes_anything_else_goes_to_the_routes(path: str) -> None:
    async with client_for({"shutdown": failing}, {}) as client:
        response = await client.get(path)
    assert (response.status_code, response.text) == (200, "routed")


class LoopTurns:
    """Counts event-loop turns: a callback that reschedules itself runs once per turn."""

    def __init__(self) -> None:
        self.turn = 0
        self._loop = asyncio.get_running_loop()
        self._handle = self._loop.call_soon(self._tick)

    def _tick(self) -> None:
        self.turn += 1
        self._handle = self._loop.call_soon(self._tick)

    def stop(self) -> None:
        self._handle.cancel()


def http_scope(path: str) -> Scope:
    return {"type": "http", "method": "GET", "path": path, "query_string": b"", "headers": []}


async def no_body() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


async def ignore(message: Message) -> None:
    pass


@pytest.mark.anyio
async def test_probes_other_requests_start_a_few_per_loop_turn_and_probes_at_once() -> None:
    """The bound that keeps a flood of /status, 404s or scrapes from making a turn long."""
    turns = LoopTurns()
    started_in_turn: collections.Counter[int] = collections.Counter()
    probe_turns: list[int] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        started_in_turn[turns.turn] += 1

    async def probe_send(message: Message) -> None:
        probe_turns.append(turns.turn)

    fast_path = ProbeFastPath(app, {}, {})
    try:
        flood = [asyncio.create_task(fast_path(http_scope("/status"), no_body, ignore)) for _ in range(40)]
        await asyncio.sleep(0)  # the flood is queued
        first_turn = turns.turn
        await fast_path(http_scope("/readyz"), no_body, probe_send)
        await asyncio.gather(*flood)
    finally:
        turns.stop()
    assert sum(started_in_turn.values()) == 40
    assert max(started_in_turn.values()) <= REQUESTS_PER_TURN
    assert probe_turns == [first_turn, first_turn], "the probe waited for the flood"


@pytest.mark.anyio
async def test_probes_a_request_that_never_ends_holds_no_turn() -> None:
    """A /prestop held, an event stream, a client that does not read: none holds a permit."""
    never = asyncio.get_running_loop().create_future()
    answered = asyncio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["path"] == "/events":
            await never
        answered.set()

    fast_path = ProbeFastPath(app, {}, {})
    held = [
        asyncio.create_task(fast_path(http_scope("/events"), no_body, ignore)) for _ in range(REQUESTS_PER_TURN * 2)
    ]
    try:
        await asyncio.wait_for(fast_path(http_scope("/status"), no_body, ignore), timeout=5)
        assert answered.is_set()
    finally:
        for task in held:
            task.cancel()
        await asyncio.gather(*held, return_exceptions=True)
