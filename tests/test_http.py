"""Route logic through httpx's ASGI transport; real-process behaviour is in tests/e2e."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from sidecar.http import Limits, RequestRejected, create_app, parse_drain_report
from sidecar.lifecycle import Budget, Phase, Timeline, Trigger
from sidecar.shutdown import ShutdownSequence
from sidecar.telemetry.metrics import ShutdownMetrics
from sidecar.telemetry.report import status_document


class Admin:
    def __init__(self, *, token: str | None = None, limits: Limits | None = None, prestop: float = 0.2) -> None:
        self.timeline = Timeline(Budget(10, prestop, 1))
        self.metrics = ShutdownMetrics(CollectorRegistry(), version="test", grace_period_seconds=10)

        async def report(_: Timeline) -> None:
            return None

        self.sequence = ShutdownSequence(self.timeline, report=report)

        def status() -> Mapping[str, Any]:
            return status_document(self.timeline, 0.0)

        def shutdown_check() -> str | None:
            return "shutting down" if self.timeline.is_shutting_down else None

        app = create_app(
            sequence=self.sequence,
            metrics=self.metrics,
            status=status,
            readiness={"shutdown": shutdown_check},
            admin_token=token,
            limits=limits,
        )
        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sidecar")

    def sample(self, name: str, labels: dict[str, str] | None = None) -> float | None:
        return self.metrics.registry.get_sample_value(name, labels or {})


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_http_probes_answer_ok_until_shutdown_then_readyz_503() -> None:
    async def scenario() -> None:
        admin = Admin()
        for path in ("/livez", "/readyz", "/startupz"):
            response = await admin.client.get(path)
            assert (response.status_code, response.text) == (200, "ok")
        admin.sequence.begin(Trigger.SIGNAL)
        assert (await admin.client.get("/readyz")).status_code == 503
        assert (await admin.client.get("/livez")).status_code == 200
        assert (await admin.client.post("/livez")).status_code == 405

    run(scenario())


def test_http_readyz_verbose_lists_each_check() -> None:
    async def scenario() -> None:
        admin = Admin()
        response = await admin.client.get("/readyz?verbose")
        assert response.status_code == 200
        assert response.text.splitlines() == ["[+]shutdown ok", "readyz check passed"]
        admin.sequence.begin(Trigger.SIGNAL)
        response = await admin.client.get("/readyz?verbose")
        assert response.status_code == 503
        assert response.text.splitlines()[0] == "[-]shutdown failed: shutting down"

    run(scenario())


def test_http_prestop_beyond_the_waiter_limit_gets_429_and_waiters_are_released_together() -> None:
    async def scenario() -> None:
        admin = Admin(limits=Limits(max_prestop_waiters=2), prestop=0.5)
        sequence = asyncio.create_task(admin.sequence.run())
        waiting = [asyncio.create_task(admin.client.get("/prestop")) for _ in range(2)]
        # Both must be waiting before the third comes: it must find the limit reached.
        deadline = asyncio.get_running_loop().time() + 5
        while admin.sample("sidecar_prestop_waiting") != 2:
            assert asyncio.get_running_loop().time() < deadline, "the two callers never waited"
            await asyncio.sleep(0.001)
        third = await admin.client.get("/prestop")
        assert third.status_code == 429
        codes = [(await task).status_code for task in waiting]
        assert codes == [200, 200]
        assert admin.timeline.phase is Phase.DRAIN
        sequence.cancel()
        assert admin.sample("sidecar_prestop_requests_total", {"code": "429"}) == 1
        assert admin.sample("sidecar_prestop_requests_total", {"code": "200"}) == 2
        assert admin.sample("sidecar_prestop_waiting") == 0

    run(scenario())


def test_http_prestop_with_oversized_body_is_413_and_starts_nothing() -> None:
    async def scenario() -> None:
        admin = Admin(limits=Limits(max_body_bytes=16))
        response = await admin.client.post("/prestop", content=b"x" * 17)
        assert response.status_code == 413
        assert admin.timeline.phase is Phase.RUNNING

    run(scenario())


def test_http_prestop_head_is_refused_and_starts_nothing() -> None:
    async def scenario() -> None:
        admin = Admin()
        assert (await admin.client.head("/prestop")).status_code == 405
        assert admin.timeline.phase is Phase.RUNNING

    run(scenario())


def test_http_token_needs_the_bearer_scheme() -> None:
    async def scenario() -> None:
        admin = Admin(token="t0k")
        for header in ("t0k", "Basic t0k", "Bearer t0kk", "Bearer"):
            response = await admin.client.post("/drain", json={"inflight": 1}, headers={"Authorization": header})
            assert response.status_code == 401
            assert response.headers["www-authenticate"] == "Bearer"
        response = await admin.client.post("/drain", json={"inflight": 1}, headers={"Authorization": "bearer t0k"})
        assert response.status_code == 200
        assert admin.sample("sidecar_app_inflight") == 1

    run(scenario())


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"[]", id="array"),
        pytest.param(b"{}", id="empty-object"),
        pytest.param(b'{"inflight": 1.5}', id="fraction"),
        pytest.param(b'{"inflight": true}', id="bool"),
        pytest.param(b'{"inflight": 1, "extra": 2}', id="unknown-key"),
        pytest.param(b'{"event": "done"}', id="unknown-event"),
        pytest.param(b"\xff\xfe", id="not-utf8"),
    ],
)
def test_http_drain_report_rejects_bad_bodies(body: bytes) -> None:
    with pytest.raises(RequestRejected) as raised:
        parse_drain_report(body)
    assert raised.value.status_code == 400


def test_http_drain_report_accepts_inflight_and_complete() -> None:
    assert parse_drain_report(b'{"inflight": 0, "event": "complete"}') == (0, True)
    assert parse_drain_report(b'{"inflight": 7}') == (7, False)


def test_http_metrics_negotiates_openmetrics() -> None:
    async def scenario() -> None:
        admin = Admin()
        plain = await admin.client.get("/metrics")
        assert plain.headers["content-type"].startswith("text/plain")
        assert "sidecar_ready 1.0" in plain.text
        accept = {"Accept": "application/openmetrics-text; version=1.0.0"}
        open_metrics = await admin.client.get("/metrics", headers=accept)
        assert open_metrics.headers["content-type"].startswith("application/openmetrics-text")
        assert open_metrics.text.rstrip().endswith("# EOF")

    run(scenario())


def test_http_status_shows_the_timeline() -> None:
    async def scenario() -> None:
        admin = Admin()
        assert (await admin.client.get("/status")).json()["phase"] == "running"
        admin.sequence.begin(Trigger.PRESTOP)
        body = (await admin.client.get("/status")).json()
        assert (body["phase"], body["trigger"]) == ("prestop_delay", "prestop")

    run(scenario())
