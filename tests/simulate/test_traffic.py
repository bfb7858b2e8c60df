"""How requests reach pods, against real keep-alive loopback servers through a real Balancer: l4
keeps a pooled connection on its pod after the endpoint's removal, l7 moves per request, fresh
opens a connection each time."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
from collections.abc import AsyncIterator

import pytest

from sidecar.simulate.client import Failure
from sidecar.simulate.endpoints import Balancer, Propagation
from sidecar.simulate.pool import BalancerKind, ClientKind
from sidecar.simulate.traffic import FreshTraffic, PooledTraffic, Traffic, traffic_for
from tests.simulate.keepalive_server import KeepAliveServer, keep_alive_serving
from tests.simulate.loopback_server import closed_port
from tests.simulate.waiting import wait_until

WAIT_SECONDS = 5.0


@dataclasses.dataclass
class StandInRecord:
    app_port: int
    address: str = "127.0.0.1"


@dataclasses.dataclass(eq=False)
class StandInPod:
    name: str
    record: StandInRecord
    is_gone: bool = False


class Cluster:
    """Two pods, each a keep-alive server, behind a balancer whose changes apply on the next turn."""

    def __init__(self, a: KeepAliveServer, b: KeepAliveServer) -> None:
        self.servers = {"a": a, "b": b}
        self.pods = {name: StandInPod(name, StandInRecord(server.port)) for name, server in self.servers.items()}
        self._applied = asyncio.Event()
        self.balancer: Balancer[StandInPod] = Balancer(
            asyncio.get_running_loop(), Propagation(0.0), random.Random(1), lambda *_: self._applied.set()
        )

    async def publish(self, name: str, ready: bool) -> None:
        self._applied.clear()
        self.balancer.publish(self.pods[name], ready)
        await asyncio.wait_for(self._applied.wait(), WAIT_SECONDS)


@contextlib.asynccontextmanager
async def cluster(a: KeepAliveServer | None = None) -> AsyncIterator[Cluster]:
    async with keep_alive_serving(a or KeepAliveServer()) as a_server, keep_alive_serving(KeepAliveServer()) as b:
        yield Cluster(a_server, b)


async def send(traffic: Traffic) -> tuple[str, bool, Failure | None]:
    """One request: the pod it went to, whether its connection was reused, its failure."""
    route = traffic.route()
    assert route is not None
    result = await traffic.send(route, timeout_seconds=WAIT_SECONDS)
    return route.pod.name, route.is_reused, result.failure


@pytest.mark.anyio
async def test_l4_pooled_connection_stays_on_its_pod_after_the_endpoint_removal() -> None:
    async with cluster() as c:
        await c.publish("a", True)
        traffic = PooledTraffic(c.balancer, BalancerKind.L4, connections=1)  # type: ignore[arg-type]
        assert await send(traffic) == ("a", False, None)
        await c.publish("b", True)
        await c.publish("a", False)  # the removal has reached the balancer
        # conntrack keeps the flow: the client's connection still leads to pod a.
        assert [await send(traffic) for _ in range(3)] == [("a", True, None)] * 3
        traffic.close()
    assert c.servers["a"].requests_by_connection == [4]
    assert c.servers["b"].requests == 0
    assert traffic.connections_opened == 1


@pytest.mark.anyio
async def test_l4_pooled_connection_moves_once_its_pod_answers_connection_close() -> None:
    async with cluster(KeepAliveServer(close_after=2)) as c:
        await c.publish("a", True)
        traffic = PooledTraffic(c.balancer, BalancerKind.L4, connections=1)  # type: ignore[arg-type]
        assert await send(traffic) == ("a", False, None)
        await c.publish("b", True)
        await c.publish("a", False)
        # Answered `Connection: close`: dropped, and the next connection goes where the balancer says.
        assert await send(traffic) == ("a", True, None)
        assert await send(traffic) == ("b", False, None)
        assert await send(traffic) == ("b", True, None)
        traffic.close()
    assert traffic.connections_opened == 2


@pytest.mark.anyio
async def test_l4_pooled_connection_closed_by_its_pod_is_dropped_before_reuse() -> None:
    async with cluster() as c:
        await c.publish("a", True)
        traffic = PooledTraffic(c.balancer, BalancerKind.L4, connections=1)  # type: ignore[arg-type]
        await send(traffic)
        await c.publish("b", True)
        await c.publish("a", False)
        c.servers["a"].close_connections()  # pod a's app exits: its connections close
        await wait_until(lambda: not c.servers["a"].handlers, WAIT_SECONDS)
        assert await send(traffic) == ("b", False, None)  # checked, dropped, not retried: a new one
        traffic.close()


@pytest.mark.anyio
async def test_l4_clients_each_hold_their_own_connection() -> None:
    async with cluster() as c:
        await c.publish("a", True)
        await c.publish("b", True)
        traffic = PooledTraffic(c.balancer, BalancerKind.L4, connections=4)  # type: ignore[arg-type]
        first_round = [await send(traffic) for _ in range(4)]
        second_round = [await send(traffic) for _ in range(4)]
        traffic.close()
    assert [reused for _, reused, _ in first_round] == [False] * 4
    assert [reused for _, reused, _ in second_round] == [True] * 4
    # Each client kept the pod its connection was opened to.
    assert [pod for pod, _, _ in second_round] == [pod for pod, _, _ in first_round]
    assert {pod for pod, _, _ in first_round} == {"a", "b"}
    assert traffic.connections_opened == 4


@pytest.mark.anyio
async def test_l7_moves_every_request_once_the_removal_reaches_it_and_reuses_per_pod_connections() -> None:
    async with cluster() as c:
        await c.publish("a", True)
        traffic = PooledTraffic(c.balancer, BalancerKind.L7, connections=4)  # type: ignore[arg-type]
        assert await send(traffic) == ("a", False, None)
        await c.publish("b", True)
        await c.publish("a", False)
        assert [await send(traffic) for _ in range(3)] == [("b", False, None), ("b", True, None), ("b", True, None)]
        traffic.close()
    assert c.servers["a"].requests == 1
    assert traffic.connections_opened == 2


@pytest.mark.anyio
async def test_pooled_without_endpoints_or_connection_has_no_route() -> None:
    async with cluster() as c:
        for kind in BalancerKind:
            assert PooledTraffic(c.balancer, kind, connections=2).route() is None  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_fresh_opens_a_connection_per_request() -> None:
    async with cluster() as c:
        await c.publish("a", True)
        traffic = FreshTraffic(c.balancer)  # type: ignore[arg-type]
        assert [await send(traffic) for _ in range(3)] == [("a", False, None)] * 3
    assert c.servers["a"].requests_by_connection == [1, 1, 1]
    assert traffic.connections_opened == 3


@pytest.mark.anyio
async def test_pooled_to_a_pod_that_stopped_listening_is_refused() -> None:
    async with cluster() as c:
        await c.publish("a", True)
        traffic = PooledTraffic(c.balancer, BalancerKind.L4, connections=1)  # type: ignore[arg-type]
        c.pods["a"].record.app_port = closed_port()  # pod a's app has stopped listening
        assert await send(traffic) == ("a", False, Failure.REFUSED)


@pytest.mark.anyio
async def test_traffic_for_builds_the_kind_asked_for() -> None:
    balancer: Balancer[StandInPod] = Balancer(asyncio.get_running_loop(), Propagation(0.0), random.Random(1))
    assert isinstance(traffic_for(ClientKind.FRESH, BalancerKind.L7, balancer, 3), FreshTraffic)  # type: ignore[arg-type]
    assert isinstance(traffic_for(ClientKind.POOLED, BalancerKind.L4, balancer, 3), PooledTraffic)  # type: ignore[arg-type]


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["fresh", "pooled"])
async def test_new_connection_to_a_pod_that_is_gone_times_out_rather_than_being_refused(kind: str) -> None:
    # Its IP no longer exists: packets to it are dropped, nothing answers with a reset.
    async with cluster() as c:
        await c.publish("a", True)
        c.pods["a"].is_gone = True
        traffic: Traffic = (
            FreshTraffic(c.balancer)  # type: ignore[arg-type]
            if kind == "fresh"
            else PooledTraffic(c.balancer, BalancerKind.L4, connections=1)  # type: ignore[arg-type]
        )
        route = traffic.route()
        assert route is not None
        result = await traffic.send(route, timeout_seconds=0.05)
        assert result.failure is Failure.TIMEOUT
    assert c.servers["a"].requests_by_connection == []


@pytest.mark.anyio
async def test_latency_a_request_and_its_answer_each_cross_the_network() -> None:
    async with cluster() as c:
        await c.publish("a", True)
        traffic = traffic_for(ClientKind.POOLED, BalancerKind.L4, c.balancer, 1, latency_seconds=0.05)  # type: ignore[arg-type]
        await send(traffic)  # opens the connection
        started = asyncio.get_running_loop().time()
        assert await send(traffic) == ("a", True, None)
        assert asyncio.get_running_loop().time() - started >= 0.1  # there and back, one hop each way
        traffic.close()


@pytest.mark.anyio
async def test_latency_makes_the_keep_alive_race_of_a_closing_server_visible() -> None:
    # On loopback a server's close reaches the client before its next request leaves; between
    # nodes a request already on its way meets the closed connection (reset).
    async with cluster() as c:
        await c.publish("a", True)
        traffic = traffic_for(ClientKind.POOLED, BalancerKind.L4, c.balancer, 1, latency_seconds=0.05)  # type: ignore[arg-type]
        await send(traffic)
        route = traffic.route()
        assert route is not None
        assert route.is_reused  # the client believes its idle connection open
        sending = asyncio.create_task(traffic.send(route, timeout_seconds=WAIT_SECONDS))
        await asyncio.sleep(0.01)  # the request is on its way
        for writer in list(c.servers["a"].writers):
            writer.close()  # the app's stop closes its idle connections
        assert (await sending).failure is Failure.RESET
        traffic.close()
