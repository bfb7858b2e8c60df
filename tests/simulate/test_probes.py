"""The kubelet's probes against loopback servers: one attempt's verdict, a startup probe's failure
threshold, and a readiness probe's thresholds until its container exits."""

from __future__ import annotations

import asyncio

import pytest

from sidecar.simulate.podspec import APP_PORT, HttpGet, Probe, TcpSocket
from sidecar.simulate.probes import probe_once, run_readiness_probe, run_startup_probe
from tests.simulate.loopback_server import answering, closed_port, closing_at_once, serving

WAIT_SECONDS = 5.0
FAST = {"period_seconds": 0.01, "timeout_seconds": 1.0}


@pytest.mark.parametrize(
    ("status", "passes"),
    [
        pytest.param(200, True, id="200"),
        pytest.param(302, True, id="302"),
        pytest.param(404, False, id="404"),
        pytest.param(503, False, id="503"),
    ],
)
@pytest.mark.anyio
async def test_probe_once_http_get_passes_on_200_to_399(status: int, passes: bool) -> None:
    async with serving(answering(status)) as server:
        assert await probe_once(Probe(HttpGet(APP_PORT, "/readyz")), {APP_PORT: server.port}) is passes


@pytest.mark.anyio
async def test_probe_once_tcp_socket_passes_on_a_connection() -> None:
    async with serving(closing_at_once) as server:
        assert await probe_once(Probe(TcpSocket(APP_PORT)), {APP_PORT: server.port}) is True
    assert await probe_once(Probe(TcpSocket(APP_PORT)), {APP_PORT: closed_port()}) is False


@pytest.mark.anyio
async def test_run_startup_probe_gives_up_after_the_failure_threshold() -> None:
    probe = Probe(TcpSocket(APP_PORT), failure_threshold=3, **FAST)
    async with asyncio.timeout(WAIT_SECONDS):
        assert await run_startup_probe(probe, {APP_PORT: closed_port()}, asyncio.Event()) is False


@pytest.mark.anyio
async def test_run_startup_probe_is_false_once_the_container_has_exited() -> None:
    exited = asyncio.Event()
    exited.set()
    async with serving(answering(200)) as server:
        assert await run_startup_probe(Probe(HttpGet(APP_PORT, "/")), {APP_PORT: server.port}, exited) is False


@pytest.mark.anyio
async def test_run_readiness_probe_reports_ready_then_not_ready_until_the_container_exits() -> None:
    verdicts: list[bool] = []
    exited = asyncio.Event()
    changed = asyncio.Event()

    def on_change(ready: bool) -> None:
        verdicts.append(ready)
        changed.set()

    probe = Probe(HttpGet(APP_PORT, "/"), success_threshold=2, failure_threshold=2, **FAST)
    async with serving(answering(200)) as server:
        ports = {APP_PORT: server.port}
        prober = asyncio.create_task(run_readiness_probe(probe, ports, exited, on_change))
        async with asyncio.timeout(WAIT_SECONDS):
            await changed.wait()
        assert verdicts[0] is True, "two passes in a row"
    ports[APP_PORT] = closed_port()  # the server is gone: the probe now fails
    async with asyncio.timeout(WAIT_SECONDS):
        while False not in verdicts:
            changed.clear()
            await changed.wait()
    exited.set()
    async with asyncio.timeout(WAIT_SECONDS):
        await prober
