"""The Service's endpoints as kube-proxy sees them: every change the control plane makes (a pod
became ready, a pod is being deleted) reaches the balancer only after the propagation delay, and
new connections go round-robin to the endpoints it believes ready. No I/O: the loop's timers only."""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

E = TypeVar("E", bound=Hashable)


@dataclasses.dataclass(frozen=True)
class Propagation:
    """How long an endpoint change takes to reach the balancer: `delay_seconds`, plus up to
    `spread_seconds` more, drawn per change (kube-proxies and load balancers lag unevenly)."""

    delay_seconds: float
    spread_seconds: float = 0.0

    def draw(self, rng: random.Random) -> float:
        return self.delay_seconds + (rng.uniform(0.0, self.spread_seconds) if self.spread_seconds else 0.0)


class Balancer(Generic[E]):
    """Routes each new connection to a pod the balancer believes ready. `E` is whatever the
    caller routes to (a pod); changes are published with publish() and applied later."""

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
        self._published: dict[E, int] = {}  # endpoint -> sequence number of its latest change
        self._applied: dict[E, int] = {}
        self._next_sequence = 0
        self._turn = 0
        self._pending: dict[int, asyncio.TimerHandle] = {}  # sequence number -> its delivery

    def publish(self, endpoint: E, ready: bool) -> float:
        """The control plane changed `endpoint`; returns the delay before the balancer knows."""
        self._next_sequence += 1
        self._published[endpoint] = self._next_sequence
        delay = self._propagation.draw(self._rng)
        sequence = self._next_sequence
        self._pending[sequence] = self._loop.call_later(delay, self._apply, endpoint, ready, sequence)
        return delay

    def _apply(self, endpoint: E, ready: bool, sequence: int) -> None:
        # With a spread, two changes to one endpoint can arrive out of order; the later one wins,
        # as a watch would deliver the newer resourceVersion.
        del self._pending[sequence]
        if sequence < self._applied.get(endpoint, 0):
            return
        self._applied[endpoint] = sequence
        if ready and endpoint not in self._ready:
            self._ready.append(endpoint)
        elif not ready and endpoint in self._ready:
            self._ready.remove(endpoint)
        if self._on_applied is not None:
            self._on_applied(endpoint, ready)

    def pick(self) -> E | None:
        """The endpoint for the next connection, or None when the balancer knows of none."""
        if not self._ready:
            return None
        self._turn = (self._turn + 1) % len(self._ready)
        return self._ready[self._turn]

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
