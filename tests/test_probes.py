"""The probe fast path through httpx's ASGI transport: pure route logic."""

from __future__ import annotations

import httpx
import pytest
from starlette.responses import PlainTextResponse

from sidecar.parts import ReadinessCheck
from sidecar.probes import PROBE_PATHS, ProbeFastPath, first_failure


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
@pytest.mark.parametrize("path", ["/readyz?verbose", "/status", "/livez/"])
async def test_probes_anything_else_goes_to_the_routes(path: str) -> None:
    async with client_for({"shutdown": failing}, {}) as client:
        response = await client.get(path)
    assert (response.status_code, response.text) == (200, "routed")
