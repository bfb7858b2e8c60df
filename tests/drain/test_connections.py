from __future__ import annotations

import asyncio
import socket
import time

import pytest
from prometheus_client import CollectorRegistry

from sidecar.deadline import Budget
from sidecar.drain.connections import ConnectionWatch
from sidecar.drain.port_reader import read_port_snapshot
from sidecar.lifecycle import DrainEndSource, Outcome, Phase, Timeline, Trigger
from sidecar.telemetry.metrics import ShutdownMetrics
from sidecar.telemetry.report import ConnectionCounts, Observations


@pytest.mark.anyio
async def test_connections_counted_at_t0_the_stop_and_the_drain_end_with_those_that_predate_t0() -> None:
    metrics = ShutdownMetrics(CollectorRegistry(), version="test", grace_period_seconds=30)
    observations = Observations()
    timeline = Timeline(Budget(30, 5, 1))
    accepted: list[asyncio.StreamWriter] = []
    arrived = asyncio.Condition()

    async def accept(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async with arrived:
            accepted.append(writer)
            arrived.notify_all()

    async def connect(count: int) -> list[socket.socket]:
        clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(count)]
        async with arrived:
            await asyncio.wait_for(arrived.wait_for(lambda: len(accepted) >= expected + count), 5)
        return clients

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    watch = ConnectionWatch(port, metrics=metrics, observations=observations, on_drained=lambda: None)
    timeline.add_listener(watch.on_phase_change)
    assert metrics.registry.get_sample_value("sidecar_app_connections_at_stop") == 0
    expected = 0
    pooled = await connect(2)  # keep-alive connections opened before t0
    expected = 2
    timeline.begin(Trigger.PRESTOP, time.monotonic())
    late = await connect(1)  # a connection the balancer sent after t0
    timeline.advance(Phase.DRAIN, time.monotonic())  # the app is told to stop
    for client in (*pooled, *late):
        client.close()
    for writer in accepted:
        writer.close()
    server.close()
    await server.wait_closed()
    await wait_for_port_to_drain(port)
    timeline.end_drain(DrainEndSource.CONNECTIONS, Outcome.CLEAN, time.monotonic())
    watch.close()
    assert observations.connections == ConnectionCounts(at_t0=2, at_stop=3, at_drain_end=0, at_stop_opened_before_t0=2)
    assert metrics.registry.get_sample_value("sidecar_app_connections_at_stop") == 3


async def wait_for_port_to_drain(port: int) -> None:
    deadline = time.monotonic() + 5
    while read_port_snapshot(port).established:
        assert time.monotonic() < deadline, "the connections never closed"
        await asyncio.sleep(0.01)
