"""The load generator and its tally: what became of each request, by the phase its pod was in and
by new or reused connection. The generator runs against a real loopback server through a real
Balancer and fresh connections; a stand-in pod gives it the port, the phase and its endpoint's
removal, which is all it reads of a pod. Pooled traffic has its own tests (test_traffic)."""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections.abc import Callable, Iterator

import pytest

from sidecar.simulate.client import Failure, Result
from sidecar.simulate.endpoints import Balancer, Propagation
from sidecar.simulate.load import (
    CONNECTIONS,
    KINDS,
    MAX_BINS,
    NO_ENDPOINTS,
    PHASES,
    LoadGenerator,
    Tally,
    load_document,
)
from sidecar.simulate.pool import BalancerKind, ClientKind
from sidecar.simulate.records import RequestPhase
from sidecar.simulate.traffic import FreshTraffic
from tests.simulate.loopback_server import Behaviour, answering, closing_at_once, serving

WAIT_SECONDS = 5.0


def test_load_phases_are_the_request_phases_and_no_endpoints() -> None:
    assert PHASES == ("running", "prestop", "drain", "exited", NO_ENDPOINTS)
    assert set(KINDS) == {failure.value for failure in Failure}


def test_tally_document_of_nothing_has_every_phase_and_kind_at_zero() -> None:
    document = Tally().document()
    assert document == {
        "sent": 0,
        "failed": 0,
        "by_kind": dict.fromkeys(KINDS, 0),
        "by_phase": {phase: {"sent": 0, "failed": 0, "by_kind": dict.fromkeys(KINDS, 0)} for phase in PHASES},
        "by_connection": {on: {"sent": 0, "failed": 0, "by_kind": dict.fromkeys(KINDS, 0)} for on in CONNECTIONS},
        "over_time": {"bin_seconds": 0.1, **{on: {outcome: [] for outcome in ("ok", *KINDS)} for on in CONNECTIONS}},
    }


def test_tally_over_time_counts_requests_by_when_they_left_connection_and_outcome() -> None:
    tally = Tally()
    tally.add("running", Result(200, None), sent_at=0.05)
    tally.add("drain", Result(None, Failure.RESET), reused=True, sent_at=0.25)
    tally.add("drain", Result(None, Failure.RESET), reused=True, sent_at=0.29)
    over_time = tally.document()["over_time"]
    assert over_time["bin_seconds"] == 0.1
    assert over_time["new"]["ok"] == [1, 0, 0]
    assert over_time["reused"]["reset"] == [0, 0, 2]
    assert over_time["reused"]["ok"] == [0, 0, 0]


def test_tally_over_time_gathers_a_long_rehearsal_into_at_most_max_bins() -> None:
    tally = Tally()
    for second in range(600):  # ten minutes, one request a second
        tally.add("running", Result(200, None), sent_at=float(second))
    over_time = tally.document()["over_time"]
    assert len(over_time["new"]["ok"]) <= MAX_BINS
    assert sum(over_time["new"]["ok"]) == 600
    assert over_time["bin_seconds"] == 5.0


def test_tally_document_sums_by_kind_and_by_phase() -> None:
    tally = Tally()
    for _ in range(5):
        tally.add("running", Result(200, None))
    tally.add("running", Result(503, Failure.SERVER_ERROR))
    tally.add("drain", Result(None, Failure.RESET))
    tally.add("drain", Result(None, Failure.RESET))
    tally.add("drain", Result(204, None))
    tally.add("exited", Result(None, Failure.REFUSED))
    tally.add(NO_ENDPOINTS, Result(None, Failure.REFUSED))
    tally.add("prestop", Result(None, Failure.TIMEOUT))

    document = tally.document()

    assert (tally.total_sent, tally.total_failed) == (12, 6)
    assert (document["sent"], document["failed"]) == (12, 6)
    assert document["by_kind"] == {"refused": 2, "reset": 2, "5xx": 1, "timeout": 1}
    by_phase = document["by_phase"]
    assert list(by_phase) == list(PHASES)
    none = dict.fromkeys(KINDS, 0)
    assert by_phase["running"] == {"sent": 6, "failed": 1, "by_kind": {**none, "5xx": 1}}
    assert by_phase["drain"] == {"sent": 3, "failed": 2, "by_kind": {**none, "reset": 2}}
    assert by_phase["exited"] == {"sent": 1, "failed": 1, "by_kind": {**none, "refused": 1}}
    assert by_phase[NO_ENDPOINTS]["by_kind"]["refused"] == 1
    assert by_phase["prestop"]["by_kind"]["timeout"] == 1
    assert sum(row["sent"] for row in by_phase.values()) == document["sent"]
    assert sum(row["failed"] for row in by_phase.values()) == document["failed"]
    # Nothing said reused: every request counts as sent on a new connection.
    assert document["by_connection"]["new"]["sent"] == 12
    assert document["by_connection"]["reused"]["sent"] == 0


def test_tally_document_splits_failures_by_new_and_reused_connection() -> None:
    tally = Tally()
    tally.add("running", Result(200, None), reused=True)
    tally.add("drain", Result(None, Failure.RESET), reused=True)
    tally.add("drain", Result(None, Failure.RESET), reused=True)
    tally.add("exited", Result(None, Failure.REFUSED))
    tally.add("running", Result(200, None))

    by_connection = tally.document()["by_connection"]

    none = dict.fromkeys(KINDS, 0)
    assert by_connection["reused"] == {"sent": 3, "failed": 2, "by_kind": {**none, "reset": 2}}
    assert by_connection["new"] == {"sent": 2, "failed": 1, "by_kind": {**none, "refused": 1}}


def test_load_document_names_the_client_and_balancer_and_counts_connections() -> None:
    tally = Tally(connections_opened=7)
    tally.add("running", Result(200, None), reused=True)
    tally.add("running", Result(200, None))
    assert load_document(ClientKind.POOLED, BalancerKind.L4, 16, tally) == {
        "client": "pooled",
        "balancer": "l4",
        "connections": 16,
        "connections_opened": 7,
        "requests_on_reused_connections": 1,
    }
    assert load_document(ClientKind.FRESH, BalancerKind.L7, 16, tally)["connections"] is None


class StopAfter(Tally):
    """A tally that sets `stop` once `count` requests have been counted."""

    def __init__(self, count: int) -> None:
        super().__init__()
        self.count = count
        self.stop = asyncio.Event()

    def add(self, phase: str, result: Result, *, reused: bool = False, sent_at: float | None = None) -> None:
        super().add(phase, result, reused=reused, sent_at=sent_at)
        if self.total_sent >= self.count:
            self.stop.set()


@dataclasses.dataclass
class StandInRecord:
    """What LoadGenerator reads of a pod's record: the app port and the request phase."""

    app_port: int
    phases: Iterator[RequestPhase]
    address: str = "127.0.0.1"
    asked: int = 0  # request_phase() calls: one per request that found a pod
    endpoint_removed_at: float | None = None
    requests_after_endpoint_removal: int = 0
    failed_after_endpoint_removal: int = 0
    failed_requests: list[tuple[float, str, str]] = dataclasses.field(default_factory=list)

    def request_phase(self) -> RequestPhase:
        self.asked += 1
        return next(self.phases)


@dataclasses.dataclass(eq=False)
class StandInPod:
    record: StandInRecord
    name: str = "pod"
    is_gone: bool = False


def phases(*counts: tuple[RequestPhase, int]) -> Iterator[RequestPhase]:
    """Each phase the given number of times, then the last one for ever."""
    for phase, count in counts:
        yield from [phase] * count
    while True:
        yield counts[-1][0]


def instant_balancer(on_applied: Callable[[StandInPod, bool], None] | None = None) -> Balancer[StandInPod]:
    """Endpoint changes arrive on the loop's next turn: these tests are about the load, not the lag."""
    rng = random.Random(1)
    return Balancer(asyncio.get_running_loop(), Propagation(0.0), rng, on_applied)


async def run_until(generator: LoadGenerator, stop: asyncio.Event) -> None:
    await asyncio.wait_for(generator.run(stop), WAIT_SECONDS)


@pytest.mark.anyio
async def test_load_generator_counts_no_endpoints_as_refused() -> None:
    balancer = instant_balancer()
    tally = StopAfter(10)
    await run_until(LoadGenerator(FreshTraffic(balancer), 200, 1.0, tally), tally.stop)  # type: ignore[arg-type]
    document = tally.document()
    assert document["sent"] >= 10
    assert document["failed"] == document["sent"]
    assert document["by_kind"]["refused"] == document["sent"]
    assert document["by_phase"][NO_ENDPOINTS]["sent"] == document["sent"]
    assert document["by_phase"]["running"]["sent"] == 0


@pytest.mark.anyio
async def test_load_generator_counts_requests_by_the_phase_their_pod_was_in() -> None:
    # Each answer takes 30 ms and a request leaves every 5 ms: several are in flight at the stop.
    async with serving(answering(200, delay_seconds=0.03)) as server:
        record = StandInRecord(server.port, phases((RequestPhase.RUNNING, 5), (RequestPhase.DRAIN, 1)))
        applied = asyncio.Event()
        balancer = instant_balancer(on_applied=lambda *_: applied.set())
        balancer.publish(StandInPod(record), True)
        await asyncio.wait_for(applied.wait(), WAIT_SECONDS)
        tally = StopAfter(10)
        asked_at_stop = 0

        async def note_stop() -> None:
            nonlocal asked_at_stop
            await tally.stop.wait()
            asked_at_stop = record.asked

        watcher = asyncio.create_task(note_stop())
        await run_until(LoadGenerator(FreshTraffic(balancer), 200, 1.0, tally), tally.stop)  # type: ignore[arg-type]
        await watcher
    document = tally.document()
    assert asked_at_stop > 10, "requests were in flight when the generator was stopped"
    assert document["sent"] == record.asked, "every request that left was awaited and counted"
    assert document["failed"] == 0
    assert document["by_phase"]["running"]["sent"] == 5
    assert document["by_phase"]["drain"]["sent"] == document["sent"] - 5
    assert document["by_phase"][NO_ENDPOINTS]["sent"] == 0


@pytest.mark.parametrize("rate", [pytest.param(100.0, id="100/s"), pytest.param(400.0, id="400/s")])
@pytest.mark.anyio
async def test_load_generator_sends_on_schedule(rate: float) -> None:
    loop = asyncio.get_running_loop()
    balancer = instant_balancer()
    tally = StopAfter(20)
    started = loop.time()
    await run_until(LoadGenerator(FreshTraffic(balancer), rate, 1.0, tally), tally.stop)  # type: ignore[arg-type]
    took = loop.time() - started
    assert tally.total_sent >= 20
    # The 20th request leaves 19 intervals after the first: never sooner (the small allowance is
    # the loop's clock granularity). How late it may be on a loaded machine is bounded only by
    # run_until's deadline; the schedule's lag is a figure in tests/benchmarks.
    assert took >= 19 / rate * 0.9


@pytest.mark.parametrize(
    ("behaviour", "failed"),
    [pytest.param(answering(200), False, id="served"), pytest.param(closing_at_once, True, id="reset")],
)
@pytest.mark.anyio
async def test_load_generator_counts_requests_sent_after_the_endpoint_removal_on_the_pod(
    behaviour: Behaviour, failed: bool
) -> None:
    async with serving(behaviour) as server:
        record = StandInRecord(server.port, phases((RequestPhase.PRESTOP, 1)), endpoint_removed_at=1.0)
        applied = asyncio.Event()
        balancer = instant_balancer(on_applied=lambda *_: applied.set())
        balancer.publish(StandInPod(record), True)
        await asyncio.wait_for(applied.wait(), WAIT_SECONDS)
        tally = StopAfter(5)
        await run_until(LoadGenerator(FreshTraffic(balancer), 200, 1.0, tally), tally.stop)  # type: ignore[arg-type]
    assert record.requests_after_endpoint_removal == tally.total_sent >= 5
    assert record.failed_after_endpoint_removal == (tally.total_sent if failed else 0)
    assert tally.connections_opened == tally.total_sent  # fresh: one connection per request
    assert [(kind, phase) for _, kind, phase in record.failed_requests] == (
        [("reset", "prestop")] * tally.total_sent if failed else []
    )
