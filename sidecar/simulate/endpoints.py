"""The Service's endpoints as kube-proxy sees them: each endpoint's EndpointSlice conditions (ready,
serving, terminating) as the control plane sets them reach the balancer only after the propagation
delay; new connections go round-robin to the ready endpoints or, when there are none, to the
serving and terminating ones (kube-proxy's fallback). No I/O: the loop's timers only."""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections.abc import Callable, Hashable
from typing import Final, Generic, TypeVar

E = TypeVar("E", bound=Hashable)


@dataclasses.dataclass(frozen=True)
class Conditions:
    """An endpoint's EndpointSlice conditions (KEP-1669, GA in 1.26): `ready` is the pod's Ready
    condition and not terminating, `serving` the pod's Ready condition whatever its deletion,
    `terminating` set once the pod is deleted.
    https://kubernetes.io/docs/concepts/services-networking/endpoint-slices/#conditions"""

    ready: bool
    serving: bool
    terminating: bool = False

    @classmethod
    def of_pod(cls, is_ready: bool, is_deleted: bool) -> Conditions:
        return cls(ready=is_ready and not is_deleted, serving=is_ready, terminating=is_deleted)

    @property
    def is_fallback(self) -> bool:
        """Used only when no endpoint is ready: kube-proxy (1.28+, ProxyTerminatingEndpoints GA)
        then sends new connections to serving and terminating endpoints.
        https://kubernetes.io/docs/reference/networking/virtual-ips/#traffic-to-terminating-endpoints"""
        return self.serving and self.terminating


NOT_SERVING: Final = Conditions(ready=False, serving=False)


@dataclasses.dataclass(frozen=True)
class Propagation:
    """How long an endpoint change takes to reach the balancer: `delay_seconds`, plus up to
    `spread_seconds` more, drawn per change (kube-proxies and load balancers lag unevenly)."""

    delay_seconds: float
    spread_seconds: float = 0.0

    def draw(self, rng: random.Random) -> float:
        return self.delay_seconds + (rng.uniform(0.0, self.spread_seconds) if self.spread_seconds else 0.0)


class Balancer(Generic[E]):
    """Routes each new connection to a pod the balancer believes ready, else to one serving and
    terminating. `E` is whatever the caller routes to (a pod); changes are published with
    publish() and applied later; `on_applied` hears each endpoint's `ready` as it arrives."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        propagation: Propagation,
        rng: random.Random,
        on_applied: Callable[[E, bool], None] | None = None,
    ) -> None:
        self._loop = loop
        self._propagation = propagation
        self._rng = rng
        self._on_applied = on_applied
        self._ready: list[E] = []
        self._fallback: list[E] = []  # serving and terminating: used when none is ready
        self.fallback_picks = 0  # new connections sent to a terminating endpoint
        self._published: dict[E, int] = {}  # endpoint -> sequence number of its latest change
        self._applied: dict[E, int] = {}
        self._next_sequence = 0
        self._turn = 0
        self._pending: dict[int, asyncio.TimerHandle] = {}  # sequence number -> its delivery
        # While on_applied runs: how long after it was due (the loop's time) the change arrived. A
        # busy machine delays the timers: the rehearsal's own lateness, not the cluster's.
        self.applied_late_seconds = 0.0

    def publish(self, endpoint: E, conditions: Conditions | bool) -> float:
        """The control plane changed `endpoint` (True/False: ready and serving, or neither);
        returns the delay before the balancer knows."""
        if isinstance(conditions, bool):
            conditions = Conditions(conditions, conditions)
        self._next_sequence += 1
        self._published[endpoint] = self._next_sequence
        delay = self._propagation.draw(self._rng)
        sequence = self._next_sequence
        due = self._loop.time() + delay
        self._pending[sequence] = self._loop.call_at(due, self._apply, endpoint, conditions, sequence, due)
        return delay

    def _apply(self, endpoint: E, conditions: Conditions, sequence: int, due: float) -> None:
        # With a spread, two changes to one endpoint can arrive out of order; the later one wins,
        # as a watch would deliver the newer resourceVersion.
        del self._pending[sequence]
        if sequence < self._applied.get(endpoint, 0):
            return
        self._applied[endpoint] = sequence
        for group, belongs in ((self._ready, conditions.ready), (self._fallback, conditions.is_fallback)):
            if belongs and endpoint not in group:
                group.append(endpoint)
            elif not belongs and endpoint in group:
                group.remove(endpoint)
        if self._on_applied is not None:
            self.applied_late_seconds = self._loop.time() - due
            self._on_applied(endpoint, conditions.ready)

    def pick(self) -> E | None:
        """The endpoint for the next connection, or None when the balancer knows of none ready,
        serving or terminating (kube-proxy then rejects the connection)."""
        group = self._ready or self._fallback
        if not group:
            return None
        if group is self._fallback:
            self.fallback_picks += 1
        self._turn = (self._turn + 1) % len(group)
        return group[self._turn]

    @property
    def ready(self) -> tuple[E, ...]:
        return tuple(self._ready)

    def is_settled(self) -> bool:
        """Every published change has reached the balancer."""
        return all(self._applied.get(endpoint, 0) >= sequence for endpoint, sequence in self._published.items())

    def close(self) -> None:
        for timer in self._pending.values():
            timer.cancel()
        self._pending.clear()
