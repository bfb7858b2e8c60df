"""The auto hold's choice of evidence and its quiet clock, on live asyncio events with a short rule;
the real processes are in tests/e2e/test_hold.py."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable

import pytest
from prometheus_client import CollectorRegistry

from sidecar.deadline import Budget
from sidecar.drain.arrivals import ArrivalLog
from sidecar.drain.request_starts import RequestStarts
from sidecar.hold import Hold
from sidecar.hold_rule import HoldRule
from sidecar.lifecycle import Phase, Timeline
from sidecar.logs import LOGGER_NAME
from sidecar.telemetry.metrics import ShutdownMetrics
from sidecar.telemetry.report import HoldDocument

RULE = HoldRule(minimum_seconds=0.5, maximum_seconds=3.0, confidence=0.999)  # --prestop-evidence connections
REQUESTS_RULE = dataclasses.replace(RULE, evidence="requests")


class Connections:
    """What sidecar.drain.connections.ConnectionWatch gives the hold."""

    counting = "ok"

    def __init__(self, started_at: float) -> None:
        self.arrivals = ArrivalLog(started_at)
        self.arrived = asyncio.Event()
        self.problem: str | None = None

    def add(self, at: float) -> None:
        self.arrivals.add(at, 1)
        self.arrived.set()


def pooled_traffic(t0: float, fresh: int = 0) -> tuple[Connections, RequestStarts]:
    """Before t0: two new connections in a minute (a keep-alive pool), and 50 requests a second
    over them for 5 s, reported ten times a second; and `fresh` more new connections spread
    evenly over the minute."""
    connections = Connections(t0 - 60)
    connections.add(t0 - 40)
    connections.add(t0 - 20)
    for n in range(fresh):
        connections.add(t0 - 60.0 + n * 60.0 / fresh)
    requests = RequestStarts()
    requests.update("1", 0, t0 - 5.0)
    for tick in range(1, 50):
        requests.update("1", tick * 5, t0 - 5.0 + tick * 0.1)
    return connections, requests


def begun_on_pooled_traffic(rule: HoldRule) -> tuple[Hold, float, HoldDocument]:
    """A hold by `rule` begun now on pooled_traffic, with the app's reports: (it, t0, its document at t0)."""
    t0 = time.monotonic()
    connections, requests = pooled_traffic(t0)
    hold = Hold(None, rule, connections, requests=requests)
    hold.begin(t0)
    document = hold.document(t0)
    assert document is not None
    return hold, t0, document


@pytest.mark.anyio
async def test_hold_in_requests_mode_takes_its_window_from_the_apps_requests_when_it_reports_them() -> None:
    hold, t0, document = begun_on_pooled_traffic(REQUESTS_RULE)
    assert (document["evidence"], document["window_seconds"]) == ("requests", 0.5)  # 50/s: the minimum
    assert document["rate_per_second"] == pytest.approx(49.0, abs=1)
    await hold.wait(t0, asyncio.Event())
    released = hold.document(time.monotonic())
    assert released is not None
    assert released["released_by"] == "quiet"
    assert released["duration_seconds"] == pytest.approx(0.5, abs=0.1)
    assert (released["arrivals_after_t0"], released["requests_after_t0"]) == (0, 0)


def test_hold_in_connections_mode_takes_its_window_from_connections_though_the_app_reports_requests() -> None:
    # Behind kube-proxy: 50 requests a second over a pool that opened two connections in a minute
    # say nothing about routing; the two connections do, and call for the longest hold.
    _, _, document = begun_on_pooled_traffic(RULE)
    assert (document["evidence"], document["evidence_mode"]) == ("connections", "connections")
    assert document["window_seconds"] == 3.0  # 2 a minute: the maximum, not the requests' 0.5
    assert document["rate_per_second"] == pytest.approx(2 / 60, abs=0.001)
    assert document["requests_after_t0"] == 0  # the requests are still counted after t0


@pytest.mark.anyio
async def test_hold_without_app_reports_takes_its_window_from_connections_as_before() -> None:
    t0 = time.monotonic()
    connections, _ = pooled_traffic(t0)
    for unreported in (None, RequestStarts()):
        hold = Hold(None, REQUESTS_RULE, connections, requests=unreported)
        hold.begin(t0)
        document = hold.document(t0)
        assert document is not None
        assert (document["evidence"], document["window_seconds"]) == ("connections", 3.0)  # 2 a minute: the maximum
        assert document["rate_per_second"] == pytest.approx(2 / 60, abs=0.001)
        assert document["requests_after_t0"] is None


async def hold_with_late_arrivals(
    arrive: Callable[[Connections, RequestStarts, int], object], rule: HoldRule = REQUESTS_RULE, fresh: int = 0
) -> tuple[HoldDocument, float]:
    """A hold by `rule` begun now on pooled_traffic(fresh), with `arrive(connections, requests, n)`
    for n = 1, 2, 3, 0.1 s apart, after t0. Returns the document at the release, and the seconds
    from the last arrival to the release."""
    t0 = time.monotonic()
    connections, requests = pooled_traffic(t0, fresh)
    hold = Hold(None, rule, connections, requests=requests)
    hold.begin(t0)

    async def late_arrivals() -> float:
        for n in (1, 2, 3):
            await asyncio.sleep(0.1)
            arrive(connections, requests, n)
        return time.monotonic()

    late = asyncio.create_task(late_arrivals())
    await hold.wait(t0, asyncio.Event())
    released = time.monotonic()
    last = await late
    document = hold.document(released)
    assert document is not None
    assert document["last_arrival_seconds"] == pytest.approx(last - t0, abs=0.01)
    return document, released - last


@pytest.mark.anyio
async def test_hold_a_silent_reporter_does_not_end_the_hold_while_connections_still_arrive() -> None:
    # The app reports nothing after t0; new connections keep coming.
    document, quiet = await hold_with_late_arrivals(lambda connections, _, n: connections.add(time.monotonic()))
    assert document["released_by"] == "quiet"
    assert quiet >= 0.5  # a window after the last connection, not after t0
    assert (document["arrivals_after_t0"], document["requests_after_t0"]) == (3, 0)


@pytest.mark.anyio
async def test_hold_a_request_start_after_t0_restarts_the_quiet_window() -> None:
    document, quiet = await hold_with_late_arrivals(
        lambda _, requests, n: requests.update("1", 250 + 10 * n, time.monotonic())
    )
    assert document["released_by"] == "quiet"
    assert quiet >= 0.5
    assert (document["arrivals_after_t0"], document["requests_after_t0"]) == (0, 35)  # 245 -> 280


@pytest.mark.anyio
async def test_hold_in_connections_mode_a_request_start_after_t0_still_restarts_the_quiet_window() -> None:
    # 10 new connections a second before t0: a window of ln(1000)/10 = 0.69 s; more evidence
    # (the app's reported requests) never shortens a hold.
    document, quiet = await hold_with_late_arrivals(
        lambda _, requests, n: requests.update("1", 250 + 10 * n, time.monotonic()), rule=RULE, fresh=600
    )
    assert (document["evidence"], document["released_by"]) == ("connections", "quiet")
    assert document["window_seconds"] == pytest.approx(0.69, abs=0.01)
    assert quiet >= 0.65  # a window after the last request (t0 + window would be 0.39 s after it)
    assert (document["arrivals_after_t0"], document["requests_after_t0"]) == (0, 35)


def convergence_observed(connections: Connections, after_t0: list[float]) -> tuple[float, float]:
    """(observations, their sum) of sidecar_endpoint_convergence_seconds once a hold that began
    at t0 reaches the report, `after_t0` being the new connections' offsets from t0."""
    registry = CollectorRegistry()
    metrics = ShutdownMetrics(registry, version="test", grace_period_seconds=30)
    t0 = time.monotonic()
    hold = Hold(None, RULE, connections, metrics)
    hold.begin(t0)
    for offset in after_t0:
        connections.add(t0 + offset)
    hold.on_phase_change(Phase.DRAIN, Phase.REPORT, Timeline(Budget(30, 5, 1)))
    count = registry.get_sample_value("sidecar_endpoint_convergence_seconds_count")
    total = registry.get_sample_value("sidecar_endpoint_convergence_seconds_sum")
    return count or 0.0, total or 0.0


def test_convergence_is_the_last_arrival_after_t0() -> None:
    connections, _ = pooled_traffic(time.monotonic())
    count, total = convergence_observed(connections, [0.4, 1.5])
    assert count == 1
    assert total == pytest.approx(1.5, abs=0.01)


def test_convergence_is_zero_for_a_pod_that_had_traffic_and_got_none_after_t0() -> None:
    connections, _ = pooled_traffic(time.monotonic())
    assert convergence_observed(connections, []) == (1.0, 0.0)


def test_convergence_is_not_observed_for_a_pod_that_never_had_traffic() -> None:
    assert convergence_observed(Connections(time.monotonic() - 60), []) == (0.0, 0.0)


@pytest.mark.parametrize(
    ("fixed", "rule", "source", "warned"),
    [
        pytest.param(None, RULE, None, True, id="auto-without-app-port"),
        pytest.param(None, RULE, Connections(0.0), False, id="auto-counting"),
        pytest.param(5.0, None, None, False, id="fixed"),
    ],
)
def test_hold_warns_at_start_once_when_an_auto_hold_can_count_nothing(
    fixed: float | None,
    rule: HoldRule | None,
    source: Connections | None,
    warned: bool,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER_NAME)
    hold = Hold(fixed, rule, source)
    hold.warn_if_blind()
    hold.begin(time.monotonic())  # t0: a blind hold is noted again, not warned of again
    warnings = [record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING]
    expected = "every hold will last the maximum, 3 s: pass --app-port, or --prestop-delay N for a fixed hold"
    assert warnings == ([expected] if warned else [])
