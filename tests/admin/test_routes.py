"""Route logic through httpx's ASGI transport; real-process behaviour is in tests/e2e."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from sidecar.admin.routes import Limits, create_app
from sidecar.deadline import Budget
from sidecar.lifecycle import Phase, Timeline, Trigger
from sidecar.shutdown import ShutdownSequence
from sidecar.telemetry.metrics import ShutdownMetrics
from sidecar.telemetry.report import build_report


class Admin:
    def __init__(self, *, token: str | None = None, limits: Limits | None = None, prestop: float = 0.2) -> None:
        self.timeline = Timeline(Budget(10, prestop, 1))
        self.metrics = ShutdownMetrics(CollectorRegistry(), version="test", grace_period_seconds=10)

        async def report(_: Timeline) -> None:
            return None

        self.sequence = ShutdownSequence(self.timeline, report=report)

        def status() -> Mapping[str, Any]:
            return build_report(self.timeline, 0.0)

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


@pytest.mark.anyio
async def test_http_probes_answer_ok_until_shutdown_then_readyz_503() -> None:
    admin = Admin()
    for path in ("/livez", "/readyz", "/startupz"):
        response = await admin.client.get(path)
        assert (response.status_code, response.text) == (200, "ok")
    admin.sequence.begin(Trigger.SIGNAL)
    assert (await admin.client.get("/readyz")).status_code == 503
    assert (await admin.client.get("/livez")).status_code == 200
    assert (await admin.client.post("/livez")).status_code == 405


@pytest.mark.anyio
async def test_http_readyz_verbose_lists_each_check() -> None:
    admin = Admin()
    response = await admin.client.get("/readyz?verbose")
    assert response.status_code == 200
    assert response.text.splitlines() == ["[+]shutdown ok", "readyz check passed"]
    admin.sequence.begin(Trigger.SIGNAL)
    response = await admin.client.get("/readyz?verbose")
    assert response.status_code == 503
    assert response.text.splitlines()[0] == "[-]shutdown failed: shutting down"


@pytest.mark.anyio
async def test_http_prestop_beyond_the_waiter_limit_gets_429_and_waiters_are_released_together() -> None:
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


@pytest.mark.anyio
async def test_http_prestop_with_oversized_body_is_413_and_starts_nothing() -> None:
    admin = Admin(limits=Limits(max_body_bytes=16))
    response = await admin.client.post("/prestop", content=b"x" * 17)
    assert response.status_code == 413
    assert admin.timeline.phase is Phase.RUNNING


@pytest.mark.anyio
async def test_http_prestop_head_is_refused_and_starts_nothing() -> None:
    admin = Admin()
    assert (await admin.client.head("/prestop")).status_code == 405
    assert admin.timeline.phase is Phase.RUNNING


@pytest.mark.anyio
async def test_http_token_needs_the_bearer_scheme() -> None:
    admin = Admin(token="t0k")
    for header in ("t0k", "Basic t0k", "Bearer t0kk", "Bearer"):
        response = await admin.client.post("/drain", json={"inflight": 1}, headers={"Authorization": header})
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
    response = await admin.client.post("/drain", json={"inflight": 1}, headers={"Authorization": "bearer t0k"})
    assert response.status_code == 200
    assert admin.sample("sidecar_app_inflight") == 1


@pytest.mark.anyio
async def test_http_metrics_negotiates_openmetrics() -> None:
    admin = Admin()
    plain = await admin.client.get("/metrics")
    assert plain.headers["content-type"].startswith("text/plain")
    assert "sidecar_ready 1.0" in plain.text
    accept = {"Accept": "application/openmetrics-text; version=1.0.0"}
    open_metrics = await admin.client.get("/metrics", headers=accept)
    assert open_metrics.headers["content-type"].startswith("application/openmetrics-text")
    assert open_metrics.text.rstrip().endswith("# EOF")


@pytest.mark.anyio
async def test_http_status_shows_the_timeline() -> None:
    admin = Admin()
    assert (await admin.client.get("/status")).json()["phase"] == "running"
    admin.sequence.begin(Trigger.PRESTOP)
    body = (await admin.client.get("/status")).json()
    assert (body["phase"], body["trigger"]) == ("prestop_delay", "prestop")


@pytest.mark.anyio
async def test_http_wrong_or_missing_token_is_401_counted_per_path_and_changes_nothing() -> None:
    admin = Admin(token="t0k")
    assert admin.sample("sidecar_admin_unauthorized_total", {"path": "/prestop"}) == 0
    assert admin.sample("sidecar_admin_unauthorized_total", {"path": "/drain"}) == 0
    assert (await admin.client.post("/prestop")).status_code == 401
    assert (await admin.client.get("/prestop", headers={"Authorization": "Bearer nope"})).status_code == 401
    assert (await admin.client.post("/drain", json={"inflight": 5})).status_code == 401
    assert admin.sample("sidecar_admin_unauthorized_total", {"path": "/prestop"}) == 2
    assert admin.sample("sidecar_admin_unauthorized_total", {"path": "/drain"}) == 1
    assert admin.timeline.phase is Phase.RUNNING
    assert admin.sample("sidecar_app_inflight") == 0


@pytest.mark.anyio
async def test_http_token_with_non_ascii_bytes_on_the_wire_never_matches_and_never_fails() -> None:
    admin = Admin(token="t0k")
    headers = [(b"authorization", "Bearer t\u00f6k".encode())]
    assert (await admin.client.post("/drain", json={}, headers=headers)).status_code == 401


@pytest.mark.anyio
@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b'{"inflight": ' + b"9" * 400 + b"}", id="400-digits"),
        pytest.param(b'{"inflight": 1000000001}', id="past-a-billion"),
        pytest.param(b'{"inflight": 1e308}', id="float"),
        pytest.param(b'{"inflight": NaN}', id="nan"),
        pytest.param(b"[" * 5000, id="nested-deep"),
    ],
)
async def test_http_drain_with_an_unbounded_value_is_400_and_changes_nothing(body: bytes) -> None:
    admin = Admin(limits=Limits(max_body_bytes=8192))
    response = await admin.client.post("/drain", content=body)
    assert response.status_code == 400
    assert admin.sample("sidecar_app_inflight") == 0


@pytest.mark.anyio
async def test_http_no_redirect_for_a_trailing_slash() -> None:
    admin = Admin()
    response = await admin.client.get("/prestop/", headers={"Host": "evil.example"})
    assert response.status_code == 404
    assert "location" not in response.headers
    assert admin.timeline.phase is Phase.RUNNING


@pytest.mark.anyio
async def test_http_scrapes_that_arrive_together_share_one_encoding_made_after_each_began() -> None:
    admin = Admin()
    encodings = 0
    original = admin.metrics.registry.collect

    def counting_collect() -> Any:
        nonlocal encodings
        encodings += 1
        return original()

    admin.metrics.registry.collect = counting_collect  # type: ignore[method-assign]
    answers = await asyncio.gather(*(admin.client.get("/metrics") for _ in range(20)))
    assert {answer.status_code for answer in answers} == {200}
    assert encodings < 20
    # A scrape after a change sees it.
    assert (await admin.client.post("/drain", json={"inflight": 7})).status_code == 200
    assert "sidecar_app_inflight 7.0" in (await admin.client.get("/metrics")).text


@pytest.mark.anyio
async def test_http_drain_with_a_bad_worker_is_400_and_changes_nothing() -> None:
    admin = Admin()
    assert (await admin.client.post("/drain", json={"inflight": 2, "worker": "a"})).status_code == 200
    for worker in ("", "x" * 65, "tab\there", -3, 1.5, None, {"id": 1}):
        response = await admin.client.post("/drain", json={"inflight": 9, "worker": worker})
        assert response.status_code == 400, worker
    assert admin.sample("sidecar_app_inflight") == 2


@pytest.mark.anyio
async def test_http_drain_with_bad_tasks_is_400_and_changes_nothing() -> None:
    admin = Admin()
    assert (await admin.client.post("/drain", json={"inflight": 2, "worker": "a"})).status_code == 200
    report = {"inflight": 0, "event": "complete", "worker": "a", "tasks": {"cancelled": ["loop"], "later": []}}
    response = await admin.client.post("/drain", json=report)
    assert (response.status_code, response.json()["error"]) == (400, 'unknown keys in "tasks": later')
    assert admin.sample("sidecar_app_inflight") == 2  # its inflight 0 was not applied either


@pytest.mark.anyio
async def test_http_drain_sums_workers_and_refuses_the_257th_with_429() -> None:
    admin = Admin()
    for worker in range(1, 257):
        assert (await admin.client.post("/drain", json={"inflight": 1, "worker": worker})).status_code == 200
    assert admin.sample("sidecar_app_inflight") == 256
    response = await admin.client.post("/drain", json={"inflight": 100, "worker": "one-too-many"})
    assert response.status_code == 429
    assert admin.sample("sidecar_app_inflight") == 256


@pytest.mark.anyio
async def test_http_drain_complete_from_every_worker_ends_the_drain() -> None:
    admin = Admin()
    for worker in ("a", "b"):
        await admin.client.post("/drain", json={"inflight": 1, "worker": worker})
    admin.sequence.begin(Trigger.SIGNAL)
    first = await admin.client.post("/drain", json={"event": "complete", "worker": "a"})
    assert first.json()["drain_end_accepted"] is False
    second = await admin.client.post("/drain", json={"event": "complete", "worker": "b"})
    assert second.json()["drain_end_accepted"] is True
