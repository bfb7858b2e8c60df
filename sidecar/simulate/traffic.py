"""How the load generator's requests reach the pods: a fresh connection each, pooled clients behind
a connection-level balancer (l4, kube-proxy), or a proxy's per-pod pools (l7). Chooses the pod and
the connection; what became of the request is the load generator's to count."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Protocol

from sidecar.simulate.client import Failure, Result, http_get
from sidecar.simulate.endpoints import Balancer
from sidecar.simulate.kubelet import Pod
from sidecar.simulate.pool import BalancerKind, ClientKind, Connection, Pool, exchange, open_to

PATH = "/"


async def travel(seconds: float) -> None:
    """A message crossing the network one way: on loopback it takes microseconds, between nodes
    0.2 to 2 ms. While a request travels, the server may close the connection it is on (the
    keep-alive race at an app's stop); the client learns of a close as late."""
    if seconds > 0:
        await asyncio.sleep(seconds)


async def dropped(timeout_seconds: float) -> Result:
    """A new connection to a pod that is gone: its IP no longer exists, the packets are dropped
    and the client's connect times out (a live pod's closed port would refuse at once)."""
    await asyncio.sleep(timeout_seconds)
    return Result(None, Failure.TIMEOUT)


@dataclasses.dataclass(frozen=True)
class Route:
    pod: Pod
    connection: Connection[Pod] | None  # None: a new connection to `pod`
    pool: Pool[Pod] | None = None  # where a kept connection goes back; None: not pooled

    @property
    def is_reused(self) -> bool:
        return self.connection is not None


class Traffic(Protocol):
    def route(self) -> Route | None:
        """The pod and connection for the next request; None when the balancer knows no pod."""

    async def send(self, route: Route, *, timeout_seconds: float) -> Result:
        """The request on its route, connect included, within `timeout_seconds`."""

    @property
    def connections_opened(self) -> int: ...

    def close(self) -> None:
        """Close every idle connection (the end of the load)."""


class FreshTraffic:
    """A new connection per request, to the pod the balancer picks: what today's clients that
    do not reuse connections see; l4 and l7 do not differ for them."""

    def __init__(self, balancer: Balancer[Pod], one_way_seconds: float = 0.0) -> None:
        self._balancer = balancer
        self._one_way = one_way_seconds
        self.connections_opened = 0

    def route(self) -> Route | None:
        pod = self._balancer.pick()
        return None if pod is None else Route(pod, None)

    async def send(self, route: Route, *, timeout_seconds: float) -> Result:
        self.connections_opened += 1
        if route.pod.is_gone:
            return await dropped(timeout_seconds)
        record = route.pod.record
        # SYN, SYN-ACK and the request cross the network before the app sees the request.
        await travel(3 * self._one_way)
        result = await http_get(record.app_port, PATH, timeout_seconds=timeout_seconds, host=record.address)
        await travel(self._one_way)
        return result

    def close(self) -> None:
        pass


class PooledTraffic:
    """`connections` keep-alive connections in all. l4: that many clients, each reusing one
    connection, whose pod the balancer chose when it opened and which stays there after the
    endpoint is removed. l7: one proxy that picks a pod per request and reuses an idle connection
    to it, keeping up to `connections` idle over all pods."""

    def __init__(
        self, balancer: Balancer[Pod], kind: BalancerKind, connections: int, one_way_seconds: float = 0.0
    ) -> None:
        self._balancer = balancer
        self._kind = kind
        self._one_way = one_way_seconds
        if kind is BalancerKind.L4:
            self._pools: list[Pool[Pod]] = [Pool(max_idle=1) for _ in range(connections)]
        else:
            self._pools = [Pool(max_idle=connections)]
        self._turn = -1

    @property
    def connections_opened(self) -> int:
        return sum(pool.opened for pool in self._pools)

    def route(self) -> Route | None:
        self._turn = (self._turn + 1) % len(self._pools)
        pool = self._pools[self._turn]
        if self._kind is BalancerKind.L4:
            # A client knows only the Service's address: any connection it holds will do.
            connection = pool.take()
            if connection is not None:
                return Route(connection.pod, connection, pool)
            pod = self._balancer.pick()
            return None if pod is None else Route(pod, None, pool)
        pod = self._balancer.pick()
        return None if pod is None else Route(pod, pool.take(pod), pool)

    async def send(self, route: Route, *, timeout_seconds: float) -> Result:
        pool = route.pool
        if pool is None:
            raise ValueError(f"a route to {route.pod.name} without its pool")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_seconds
        port, host = route.pod.record.app_port, route.pod.record.address
        connection = route.connection
        keep = False
        try:
            if connection is None:
                if route.pod.is_gone:
                    return await dropped(timeout_seconds)
                try:
                    async with asyncio.timeout_at(deadline):
                        await travel(self._one_way)  # the SYN
                        connection = await open_to(route.pod, port, pool, host)
                        await travel(self._one_way)  # the SYN-ACK
                except TimeoutError:
                    return Result(None, Failure.TIMEOUT)
                except ConnectionRefusedError:
                    return Result(None, Failure.REFUSED)
                except OSError:
                    return Result(None, Failure.RESET)
            # The request crosses the network on a connection the client believes open; the
            # server may close it meanwhile.
            await travel(self._one_way)
            left = max(0.0, deadline - loop.time())
            result, keep = await exchange(connection, port, PATH, timeout_seconds=left, host=host)
            await travel(self._one_way)
            return result
        finally:
            # Kept: back to its pool for the next request. Not kept, failed or cancelled: closed,
            # as a pool drops a connection the server closed or answered `Connection: close` on.
            if connection is not None:
                if keep:
                    pool.put(connection)
                else:
                    connection.close()

    def close(self) -> None:
        for pool in self._pools:
            pool.close()


def traffic_for(
    client: ClientKind, kind: BalancerKind, balancer: Balancer[Pod], connections: int, latency_seconds: float = 0.0
) -> Traffic:
    """`latency_seconds`: one network hop, one way. kube-proxy (l4, and fresh connections through a
    Service) rewrites packets in the client node's kernel: one hop to the pod; an l7 proxy is a
    hop of its own: client to proxy, proxy to pod."""
    hops = 2 if kind is BalancerKind.L7 and client is ClientKind.POOLED else 1
    if client is ClientKind.FRESH:
        return FreshTraffic(balancer, hops * latency_seconds)
    return PooledTraffic(balancer, kind, connections, hops * latency_seconds)
