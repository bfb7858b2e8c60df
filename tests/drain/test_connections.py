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


@pytest.mark.anyio
async def test_connections_an_arrival_just_before_t0_is_not_late() -> None:
    # Dumps count the arrivals here (the /proc tables: no counter); the one that came after the
    # last tick but before t0 is counted at t0's own read, as traffic before t0.
    metrics = ShutdownMetrics(CollectorRegistry(), version="test", grace_period_seconds=30)
    observations = Observations()
    server = await asyncio.start_server(lambda _r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    watch = ConnectionWatch(
        port, metrics=metrics, observations=observations, on_drained=lambda: None, tables=("/proc/net/tcp",)
    )
    watch.start()
    watch._sample()  # the last idle tick's read: the baseline
    with socket.create_connection(("127.0.0.1", port)):
        t0 = time.monotonic()
        watch.shutdown_began(t0)
        assert watch.arrivals.before(t0).arrivals == 1
        assert watch.arrivals.since(t0) == (0, None)
        assert observations.late_connections == 0
        assert metrics.registry.get_sample_value("sidecar_late_connections_total") == 0
    watch.close()
    server.close()
    await server.wait_closed()


def test_connections_counter_arrivals_read_before_t0_are_not_late() -> None:
    # In a pod's own namespace TcpPassiveOpens counts the arrivals, a tick behind: what the last
    # tick before t0 read is counted at t0, as before it, not at the first tick after.
    metrics = ShutdownMetrics(CollectorRegistry(), version="test", grace_period_seconds=30)
    observations = Observations()
    readings = iter([(100, 0), (105, 0), (105, 0), (105, 0)])
    watch = ConnectionWatch(
        9,
        metrics=metrics,
        observations=observations,
        on_drained=lambda: None,
        tables=("/nonexistent/tcp",),  # no socket to dump: the counter alone counts
        counters=lambda: next(readings),
    )
    watch.other_listeners = frozenset()  # no other listener: the counter is the app's
    for _ in range(2):  # the start, then an idle tick that reads five new passive opens
        watch._counters_moved()
        watch._count_unseen()
    t0 = time.monotonic()
    watch.shutdown_began(t0)
    assert watch.arrivals.before(t0).arrivals == 5
    assert observations.late_connections == 0


def test_connections_counter_restarts_its_baseline_when_another_listener_came_and_went() -> None:
    # While another listener shares the namespace, TcpPassiveOpens counts its connections too:
    # once it is gone, only the passive opens from then on are the app's.
    metrics = ShutdownMetrics(CollectorRegistry(), version="test", grace_period_seconds=30)
    # One look a tick: alone (the baseline, ten arrivals counted a tick behind), beside another
    # listener whose 40 connections are not the app's, alone again (the baseline again, three).
    ticks = [(100, {9}), (110, {9}), (110, {9}), (150, {9, 5000}), (150, {9}), (153, {9}), (153, {9})]
    readings = iter([(opens, 0) for opens, _ in ticks])
    listeners = iter([ports for _, ports in ticks])
    watch = ConnectionWatch(
        9,
        metrics=metrics,
        observations=Observations(),
        on_drained=lambda: None,
        tables=("/nonexistent/tcp",),
        counters=lambda: next(readings),
    )
    watch.reader.listening_ports = lambda: next(listeners)  # type: ignore[method-assign]
    for _ in ticks:
        watch._check_listeners()
        watch._counters_moved()
        watch._count_unseen()
    assert watch.arrivals.total == 10 + 3
