"""The simulated Service endpoints: a change reaches the balancer only after its propagation
delay, later changes win over earlier ones that arrive late, and connections go round-robin.
Waits on the balancer's on_applied callback with a deadline, never on a bare sleep."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Iterable

import pytest

from sidecar.simulate.endpoints import Balancer, Conditions, Propagation

WAIT_SECONDS = 2.0


class ChosenDelays(random.Random):
    """An rng whose uniform() returns the values given, in order: Propagation(0, spread) then
    draws exactly these delays."""

    def __init__(self, values: Iterable[float]) -> None:
        super().__init__(0)
        self._values = list(values)

    def uniform(self, a: float, b: float) -> float:
        value = self._values.pop(0)
        assert a <= value <= b
        return value


class Applied:
    """on_applied for a Balancer: every change it applied, and an event per endpoint."""

    def __init__(self) -> None:
        self.changes: list[tuple[str, bool]] = []
        self._events: dict[str, asyncio.Event] = {}

    def __call__(self, endpoint: str, ready: bool) -> None:
        self.changes.append((endpoint, ready))
        self.event(endpoint).set()

    def event(self, endpoint: str) -> asyncio.Event:
        return self._events.setdefault(endpoint, asyncio.Event())

    def expect(self, endpoint: str) -> Awaitable[bool]:
        """Call before the change: awaiting the result waits (with a deadline) until the balancer
        applies the next change to `endpoint`."""
        event = self._events[endpoint] = asyncio.Event()
        return asyncio.wait_for(event.wait(), WAIT_SECONDS)


def seeded(seed: int) -> random.Random:
    return random.Random(seed)


def balancer_with(
    propagation: Propagation, rng: random.Random | None = None
) -> tuple[Balancer[str], Applied, asyncio.AbstractEventLoop]:
    loop = asyncio.get_running_loop()
    applied = Applied()
    return Balancer(loop, propagation, rng or seeded(1), on_applied=applied), applied, loop


@pytest.mark.anyio
async def test_balancer_routes_to_a_ready_endpoint_only_after_the_propagation_delay() -> None:
    balancer, applied, loop = balancer_with(Propagation(0.05))
    published_at = loop.time()
    waiting = applied.expect("pod-1")
    assert balancer.publish("pod-1", True) == 0.05
    assert balancer.pick() is None
    assert balancer.ready == ()
    await waiting
    assert loop.time() - published_at >= 0.05
    assert balancer.pick() == "pod-1"
    assert balancer.ready == ("pod-1",)


@pytest.mark.anyio
async def test_balancer_keeps_routing_to_a_removed_endpoint_until_the_removal_arrives() -> None:
    balancer, applied, loop = balancer_with(Propagation(0.05))
    waiting = applied.expect("pod-1")
    balancer.publish("pod-1", True)
    await waiting
    waiting = applied.expect("pod-1")
    removed_at = loop.time()
    balancer.publish("pod-1", False)
    assert balancer.pick() == "pod-1", "kube-proxy still routes to it until the change arrives"
    await waiting
    assert loop.time() - removed_at >= 0.05
    assert balancer.pick() is None
    assert applied.changes == [("pod-1", True), ("pod-1", False)]


@pytest.mark.anyio
async def test_balancer_pick_is_none_when_it_knows_no_endpoint() -> None:
    balancer, _, _ = balancer_with(Propagation(0.0))
    assert balancer.pick() is None


@pytest.mark.anyio
async def test_balancer_picks_round_robin_over_the_ready_endpoints() -> None:
    balancer, applied, _ = balancer_with(Propagation(0.0))
    endpoints = ["pod-1", "pod-2", "pod-3"]
    waiting = [applied.expect(e) for e in endpoints]
    for endpoint in endpoints:
        balancer.publish(endpoint, True)
    await asyncio.gather(*waiting)
    picks = [balancer.pick() for _ in range(7)]
    assert sorted(picks[:3]) == ["pod-1", "pod-2", "pod-3"]
    assert picks[3:6] == picks[:3]
    assert picks[6] == picks[0]


@pytest.mark.anyio
async def test_balancer_round_robin_goes_on_over_the_rest_after_a_removal() -> None:
    balancer, applied, _ = balancer_with(Propagation(0.0))
    for endpoint in ("pod-1", "pod-2", "pod-3"):
        waiting = applied.expect(endpoint)
        balancer.publish(endpoint, True)
        await waiting
    balancer.pick()
    waiting = applied.expect("pod-2")
    balancer.publish("pod-2", False)
    await waiting
    picks = [balancer.pick() for _ in range(4)]
    assert sorted(picks[:2]) == ["pod-1", "pod-3"]
    assert picks[2:] == picks[:2]


@pytest.mark.anyio
async def test_balancer_applies_the_later_change_when_the_earlier_arrives_last() -> None:
    # Ready takes 0.10 s to arrive, the removal published after it only 0.02 s; the witness
    # change on another endpoint arrives after both.
    balancer, applied, _ = balancer_with(Propagation(0.0, 1.0), ChosenDelays([0.10, 0.02, 0.15]))
    witness = applied.expect("witness")
    removal = applied.expect("pod-1")
    assert balancer.publish("pod-1", True) == 0.10
    assert balancer.publish("pod-1", False) == 0.02
    balancer.publish("witness", True)
    await removal
    assert balancer.is_settled() is False, "the witness has not arrived"
    await witness
    assert balancer.is_settled() is True
    assert balancer.ready == ("witness",), "the stale 'ready' must not put pod-1 back"
    assert applied.changes == [("pod-1", False), ("witness", True)]


@pytest.mark.anyio
async def test_balancer_applies_each_change_after_its_own_drawn_delay() -> None:
    balancer, applied, _ = balancer_with(Propagation(0.0, 1.0), ChosenDelays([0.02, 0.05]))
    first, second = applied.expect("pod-1"), applied.expect("pod-2")
    balancer.publish("pod-1", True)
    balancer.publish("pod-2", True)
    await first
    assert balancer.ready == ("pod-1",)
    await second
    assert balancer.ready == ("pod-1", "pod-2")


@pytest.mark.anyio
async def test_balancer_is_settled_once_every_published_change_has_arrived() -> None:
    balancer, applied, _ = balancer_with(Propagation(0.05))
    assert balancer.is_settled(), "nothing published"
    waiting = applied.expect("pod-1")
    balancer.publish("pod-1", True)
    assert not balancer.is_settled()
    await waiting
    assert balancer.is_settled()
    waiting = applied.expect("pod-1")
    balancer.publish("pod-1", False)
    assert not balancer.is_settled()
    await waiting
    assert balancer.is_settled()


@pytest.mark.anyio
async def test_balancer_close_cancels_the_pending_changes() -> None:
    balancer, applied, _ = balancer_with(Propagation(0.05))
    balancer.publish("pod-1", True)
    balancer.close()
    # A second balancer's later change: once it arrives, the first one's would have too.
    witness, witnessed, _ = balancer_with(Propagation(0.10))
    waiting = witnessed.expect("witness")
    witness.publish("witness", True)
    await waiting
    assert applied.changes == []
    assert balancer.pick() is None
    assert not balancer.is_settled()


def test_propagation_draw_without_spread_is_the_delay() -> None:
    rng = seeded(7)
    assert {Propagation(0.25).draw(rng) for _ in range(20)} == {0.25}


def test_propagation_draw_stays_within_delay_and_delay_plus_spread() -> None:
    rng = seeded(7)
    draws = [Propagation(1.0, 0.5).draw(rng) for _ in range(500)]
    assert all(1.0 <= d <= 1.5 for d in draws)
    assert min(draws) < 1.1
    assert max(draws) > 1.4, "the spread is used, not only the delay"


def test_propagation_draw_is_reproducible_from_the_seed() -> None:
    propagation = Propagation(1.0, 2.0)
    first, second = seeded(42), seeded(42)
    assert [propagation.draw(first) for _ in range(5)] == [propagation.draw(second) for _ in range(5)]


@pytest.mark.parametrize(
    ("propagation", "bounds"),
    [
        pytest.param(Propagation(0.0), (0.0, 0.0), id="instant"),
        pytest.param(Propagation(0.0, 0.3), (0.0, 0.3), id="spread-only"),
        pytest.param(Propagation(2.0, 1.0), (2.0, 3.0), id="delay-and-spread"),
    ],
)
@pytest.mark.anyio
async def test_balancer_publish_returns_the_drawn_delay(propagation: Propagation, bounds: tuple[float, float]) -> None:
    balancer, _, _ = balancer_with(propagation)
    try:
        delay = balancer.publish("pod-1", True)
    finally:
        balancer.close()
    low, high = bounds
    assert low <= delay <= high


@pytest.mark.anyio
async def test_balancer_falls_back_to_serving_terminating_endpoints_only_when_none_is_ready() -> None:
    applied = asyncio.Event()
    balancer: Balancer[str] = Balancer(
        asyncio.get_running_loop(), Propagation(0.0), random.Random(1), lambda *_: applied.set()
    )

    async def publish(endpoint: str, *, is_ready: bool, is_deleted: bool) -> None:
        applied.clear()
        balancer.publish(endpoint, Conditions.of_pod(is_ready, is_deleted))
        await asyncio.wait_for(applied.wait(), WAIT_SECONDS)

    assert Conditions.of_pod(is_ready=True, is_deleted=True) == Conditions(ready=False, serving=True, terminating=True)
    await publish("old", is_ready=True, is_deleted=True)
    await publish("gone", is_ready=False, is_deleted=True)
    assert {balancer.pick() for _ in range(4)} == {"old"}  # the serving one, never "gone"
    assert balancer.fallback_picks == 4
    await publish("new", is_ready=True, is_deleted=False)
    assert {balancer.pick() for _ in range(4)} == {"new"}  # a ready endpoint ends the fallback
    await publish("new", is_ready=False, is_deleted=False)
    await publish("old", is_ready=False, is_deleted=True)
    assert balancer.pick() is None  # nothing ready, nothing serving: kube-proxy rejects
