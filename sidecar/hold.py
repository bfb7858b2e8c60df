"""The prestop hold: from t0 until the app is told to stop. Fixed, it lasts --prestop-delay;
auto, it lasts until the pod has been quiet (no new connection to the app port, no request the app
reported it started) for the window the arrivals before t0 call for (sidecar.hold_rule), within
its bounds. It waits on events and timers; the counting is sidecar.drain.connections' and
sidecar.drain.request_starts', the rule sidecar.hold_rule's."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Final, Protocol

from sidecar.deadline import wait_for_any
from sidecar.drain.arrivals import ArrivalLog, PreT0Traffic
from sidecar.hold_rule import HoldRule, choose_evidence, quiet_window, release_at, too_little_history_reason
from sidecar.lifecycle import Phase, Timeline
from sidecar.logs import LOGGER_NAME
from sidecar.telemetry.metrics import ShutdownMetrics
from sidecar.telemetry.report import HoldDocument

logger = logging.getLogger(LOGGER_NAME)

# The report's `hold.counting` without --app-port: nothing counts arrivals, so an auto hold lasts its maximum.
NOT_COUNTED: Final = "no --app-port: arrivals are not counted, every auto hold lasts its maximum"


class ArrivalSource(Protocol):
    """What the auto hold reads: sidecar.drain.connections.ConnectionWatch."""

    arrivals: ArrivalLog
    arrived: asyncio.Event  # set at each arrival; the hold clears it
    problem: str | None  # why arrivals cannot be counted at all

    @property
    def counting(self) -> str: ...


class RequestSource(Protocol):
    """The requests the app reported it started: sidecar.drain.request_starts.RequestStarts."""

    arrivals: ArrivalLog
    arrived: asyncio.Event  # set at each arrival; the hold clears it
    is_reported: bool  # a worker has sent a count: the app counts its requests


class Hold:
    """One shutdown's hold. A Timeline listener (the window is decided at t0, so the t0 event
    on /events carries it); `wait` returns when the hold is over, for every /prestop caller at
    once (they wait on the sequence's one event)."""

    def __init__(
        self,
        fixed_seconds: float | None,
        rule: HoldRule | None,
        source: ArrivalSource | None,
        metrics: ShutdownMetrics | None = None,
        requests: RequestSource | None = None,
    ) -> None:
        """`fixed_seconds` for a fixed hold; else `rule`, and `source` (None: nothing counts
        arrivals, so the hold lasts its maximum). `requests`: the app's reported request starts,
        used only beside a working `source`: a reporter that goes silent must not end the hold
        while connections still arrive."""
        self.metrics = metrics
        self.fixed_seconds = fixed_seconds
        self.rule = rule
        self.source = source
        self.requests = requests
        self._evidence: str | None = None  # requests | connections: the stream the window came from
        self._t0: float | None = None
        self._traffic: PreT0Traffic | None = None
        self._window: float | None = None
        self._released: tuple[str, float] | None = None  # released by, at

    @property
    def maximum_seconds(self) -> float:
        if self.rule is None:
            return self.fixed_seconds or 0.0
        return self.rule.maximum_seconds

    @property
    def counting(self) -> str:
        if self.source is None:
            return NOT_COUNTED
        return self.source.counting

    def warn_if_blind(self) -> None:
        """At start-up, once: an auto hold with nothing to count (no --app-port) lasts its maximum
        at every shutdown, which the operator should learn before the first rollout, not at it.
        (Counting that fails later is warned of once by the part that counts.)"""
        if self.rule is not None and self.source is None:
            logger.warning(
                "every hold will last the maximum, %g s: pass --app-port, or --prestop-delay N for a fixed hold",
                self.rule.maximum_seconds,
                extra={"fields": {"reason": self.counting, "maximum_seconds": self.rule.maximum_seconds}},
            )

    def _can_count(self) -> bool:
        return self.source is not None and self.source.problem is None

    def on_phase_change(self, previous: Phase, current: Phase, timeline: Timeline) -> None:
        if current is Phase.PRESTOP_DELAY:
            self.begin(timeline.started_at)
        elif current is Phase.REPORT:
            self._observe_convergence()

    def _observe_convergence(self) -> None:
        """Once per shutdown, at the drain's end (connections keep arriving after the hold when
        endpoints converge late): when the last new connection, or request the app reported, came.
        A pod that had no traffic before t0 and got none after says nothing about convergence and
        is left out."""
        last = self._last_since_t0()
        if self.metrics is None or self.source is None or self._t0 is None:
            return
        logs = [self.source.arrivals] if self.requests is None else [self.source.arrivals, self.requests.arrivals]
        had_traffic = any(log.before(self._t0).arrivals > 0 for log in logs)
        if last is not None:
            self.metrics.convergence.observe(last - self._t0)
        elif had_traffic:
            self.metrics.convergence.observe(0.0)

    def begin(self, t0: float) -> None:
        self._t0 = t0
        if self.rule is None:
            return
        if not self._can_count():  # a failure never shortens the hold; warned of already, at start or at the failure
            logger.info("holding to the maximum", extra={"fields": {"reason": self.counting}})
            return
        assert self.source is not None  # noqa: S101 - _can_count() says so
        requests = None if self.requests is None else self.requests.arrivals.before(t0)
        self._evidence, self._traffic = choose_evidence(self.rule.evidence, self.source.arrivals.before(t0), requests)
        self._window = quiet_window(self._traffic, self.rule)
        if self._window is None and self._traffic.arrivals > 0:
            logger.info(
                "holding to the maximum",
                extra={
                    "fields": {
                        "reason": too_little_history_reason(f"{self._traffic.span_seconds:.3g} s"),
                    }
                },
            )

    async def wait(self, t0: float, interrupted: asyncio.Event) -> None:
        """Until the hold that began at `t0` is over, or `interrupted`."""
        if self._t0 is None:  # not a Timeline listener (tests, a bare sequence)
            self.begin(t0)
        if self.rule is None:
            ended = not await wait_for_any((interrupted,), t0 + (self.fixed_seconds or 0.0))
            self._release("fixed" if ended else "interrupted")
            return
        arrived = [] if self.source is None else [self.source.arrived]
        if self.requests is not None:
            arrived.append(self.requests.arrived)
        while True:
            for event in arrived:
                event.clear()
            release = self._release_at(t0)
            if release <= time.monotonic():
                break
            await wait_for_any((interrupted, *arrived) if self._can_count() else (interrupted,), release)
            if interrupted.is_set():
                self._release("interrupted")
                return
        maximum = t0 + self.rule.maximum_seconds
        self._release("maximum" if self._window is None or release >= maximum else "quiet")

    def _release_at(self, t0: float) -> float:
        assert self.rule is not None  # noqa: S101
        if not self._can_count():
            return t0 + self.rule.maximum_seconds
        return release_at(t0, self._window, self._last_since_t0(), self.rule)

    def _since_t0(self) -> tuple[int, float | None]:
        """(new connections after t0, the last one's time)."""
        if self.source is None or self._t0 is None:
            return 0, None
        return self.source.arrivals.since(self._t0)

    def _requests_since_t0(self) -> tuple[int, float | None] | None:
        """(requests the app reported it started after t0, the last one's time); None when the
        app has reported no count."""
        if self.requests is None or self._t0 is None or not self.requests.is_reported:
            return None
        return self.requests.arrivals.since(self._t0)

    def _last_since_t0(self) -> float | None:
        """The last arrival after t0 of either kind: each restarts the quiet window."""
        requests = self._requests_since_t0()
        times = [at for at in (self._since_t0()[1], None if requests is None else requests[1]) if at is not None]
        return max(times, default=None)

    def _release(self, released_by: str) -> None:
        self._released = (released_by, time.monotonic())
        if self.metrics is not None and self._t0 is not None:
            mode = "fixed" if self.rule is None else "auto"
            self.metrics.hold.labels(mode=mode, released_by=released_by).observe(self._released[1] - self._t0)
        logger.info("hold ended", extra={"fields": dict(self.document(time.monotonic()) or {})})

    def document(self, now: float) -> HoldDocument | None:
        """The report's `hold`: None before t0."""
        t0 = self._t0
        if t0 is None:
            return None
        count, _ = self._since_t0()
        requests = self._requests_since_t0()
        last = self._last_since_t0()
        traffic = self._traffic
        auto = self.rule is not None
        rate = None if traffic is None or traffic.rate_per_second is None else round(traffic.rate_per_second, 3)
        return {
            "mode": "auto" if auto else "fixed",
            "released_by": None if self._released is None else self._released[0],
            "duration_seconds": None if self._released is None else round(self._released[1] - t0, 6),
            "maximum_seconds": self.maximum_seconds,
            "window_seconds": None if self._window is None else round(self._window, 6),
            "rate_per_second": rate if auto else None,
            "longest_gap_seconds": None
            if traffic is None or traffic.longest_gap_seconds is None
            else round(traffic.longest_gap_seconds, 6),
            "counted_seconds": None if traffic is None else round(traffic.span_seconds, 6),
            "arrivals_after_t0": count,
            "requests_after_t0": None if requests is None else requests[0],
            "last_arrival_seconds": None if last is None else round(last - t0, 6),
            "counting": self.counting,
            "evidence": self._evidence,
            "evidence_mode": None if self.rule is None else self.rule.evidence,
        }
