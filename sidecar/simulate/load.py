"""The load generator: an open loop of GETs at a fixed rate, sent as sidecar.simulate.traffic
routes them (pooled or fresh connections, l4 or l7), and the tally of what became of them by the
phase their pod was in and by new or reused connection. A slow pod does not slow the schedule:
that is how real clients behave."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
from typing import Final

from sidecar.simulate.client import Failure, Result
from sidecar.simulate.lateness import Lateness
from sidecar.simulate.pool import BalancerKind, ClientKind
from sidecar.simulate.records import FailedRequest, RequestPhase
from sidecar.simulate.traffic import Traffic

NO_ENDPOINTS: Final = "no_endpoints"  # the balancer knew of no ready pod: kube-proxy rejects
PHASES: Final = (*(phase.value for phase in RequestPhase), NO_ENDPOINTS)
KINDS: Final = tuple(failure.value for failure in Failure)
CONNECTIONS: Final = ("new", "reused")  # what the request went out on
OUTCOMES: Final = ("ok", *KINDS)
# Requests over time are counted in fine bins and gathered into at most MAX_BINS when reported.
FINE_BIN_SECONDS: Final = 0.1
MAX_BINS: Final = 120
# Failed requests kept per pod, with their time, for the page's lanes (a baseline drops hundreds).
MAX_FAILURES_PER_POD: Final = 2000


def kinds_document(failed: collections.Counter[tuple[str, str]], key: str) -> dict[str, int]:
    return {kind: failed[key, kind] for kind in KINDS}


@dataclasses.dataclass
class Tally:
    sent: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)  # by phase
    failed: collections.Counter[tuple[str, str]] = dataclasses.field(default_factory=collections.Counter)
    sent_on: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)  # by connection
    failed_on: collections.Counter[tuple[str, str]] = dataclasses.field(default_factory=collections.Counter)
    connections_opened: int = 0
    failures: list[FailedRequest] = dataclasses.field(default_factory=list)  # each, for the judgement
    # By (fine bin of the time the request left, connection, outcome): requests over time.
    over_time: collections.Counter[tuple[int, str, str]] = dataclasses.field(default_factory=collections.Counter)

    def add(self, phase: str, result: Result, *, reused: bool = False, sent_at: float | None = None) -> None:
        """Count one request; `sent_at` (seconds since the rehearsal began) places it in time."""
        on = CONNECTIONS[reused]
        self.sent[phase] += 1
        self.sent_on[on] += 1
        if result.failure is not None:
            self.failed[phase, result.failure.value] += 1
            self.failed_on[on, result.failure.value] += 1
        if sent_at is not None:
            outcome = "ok" if result.failure is None else result.failure.value
            self.over_time[int(sent_at / FINE_BIN_SECONDS), on, outcome] += 1

    @property
    def total_sent(self) -> int:
        return sum(self.sent.values())

    @property
    def total_failed(self) -> int:
        return sum(self.failed.values())

    def document(self) -> dict[str, object]:
        """`requests` in simulate's JSON: totals, failures by kind, and both by phase."""
        by_kind = {kind: sum(n for (_, k), n in self.failed.items() if k == kind) for kind in KINDS}
        by_phase = {
            phase: {
                "sent": self.sent[phase],
                "failed": sum(n for (p, _), n in self.failed.items() if p == phase),
                "by_kind": kinds_document(self.failed, phase),
            }
            for phase in PHASES
        }
        by_connection = {
            on: {
                "sent": self.sent_on[on],
                "failed": sum(n for (o, _), n in self.failed_on.items() if o == on),
                "by_kind": kinds_document(self.failed_on, on),
            }
            for on in CONNECTIONS
        }
        return {
            "sent": self.total_sent,
            "failed": self.total_failed,
            "by_kind": by_kind,
            "by_phase": by_phase,
            "by_connection": by_connection,
            "over_time": self.over_time_document(),
        }

    def over_time_document(self) -> dict[str, object]:
        """Requests by the time they left, in bins of `bin_seconds` from the rehearsal's start:
        for new and reused connections, a list of counts per outcome."""
        fine_bins = max((index for index, _, _ in self.over_time), default=-1) + 1
        per_bin = max(1, -(-fine_bins // MAX_BINS))  # fine bins gathered into one
        bins = -(-fine_bins // per_bin)
        series = {on: {outcome: [0] * bins for outcome in OUTCOMES} for on in CONNECTIONS}
        for (index, on, outcome), count in self.over_time.items():
            series[on][outcome][index // per_bin] += count
        return {"bin_seconds": round(per_bin * FINE_BIN_SECONDS, 3), **series}


def load_document(client: ClientKind, balancer: BalancerKind, connections: int, tally: Tally) -> dict[str, object]:
    """`load` in simulate's JSON: how the requests were sent, and how often a connection was reused."""
    return {
        "client": client.value,
        "balancer": balancer.value,
        "connections": connections if client is ClientKind.POOLED else None,
        "connections_opened": tally.connections_opened,
        "requests_on_reused_connections": tally.sent_on["reused"],
    }


class LoadGenerator:
    def __init__(
        self,
        traffic: Traffic,
        rate_per_second: float,
        timeout_seconds: float,
        tally: Tally,
        *,
        lateness: Lateness | None = None,
        origin: float = 0.0,
    ) -> None:
        """`lateness`: where sends behind the schedule are recorded; `origin`: the loop's time at
        the rehearsal's start (the simulation clock's zero), for the times recorded."""
        self.tally = tally
        self._traffic = traffic
        self._interval = 1.0 / rate_per_second
        self._timeout_seconds = timeout_seconds
        self._inflight: set[asyncio.Task[None]] = set()
        self._lateness = lateness
        self._origin = origin

    async def run(self, stop: asyncio.Event) -> None:
        """Send on schedule until `stop` is set; then wait for the requests still in flight."""
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        try:
            while not stop.is_set():
                late = loop.time() - next_at
                task = asyncio.create_task(self._request(late))
                self._inflight.add(task)
                task.add_done_callback(self._inflight.discard)
                next_at += self._interval
                delay = next_at - loop.time()
                if delay > 0:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(delay):
                            await stop.wait()
            await asyncio.gather(*self._inflight)
        finally:
            inflight = list(self._inflight)  # cancelled: so are the requests it started
            for task in inflight:
                task.cancel()
            await asyncio.gather(*inflight, return_exceptions=True)
            self._traffic.close()

    async def _request(self, late_seconds: float = 0.0) -> None:
        loop = asyncio.get_running_loop()
        sent_at = loop.time() - self._origin
        if self._lateness is not None:
            self._lateness.send_late(sent_at - late_seconds, late_seconds)
        route = self._traffic.route()
        if route is None:
            self.tally.add(NO_ENDPOINTS, Result(None, Failure.REFUSED), sent_at=sent_at)
            self.tally.failures.append(
                FailedRequest("", NO_ENDPOINTS, Failure.REFUSED.value, sent_at, sent_at, late_seconds)
            )
            return
        record = route.pod.record
        # The phase when the request leaves: what it would meet on arrival.
        phase = record.request_phase().value
        # Past its endpoint's removal, only a connection that stayed on the pod (l4) brings it traffic.
        after_removal = record.endpoint_removed_at is not None
        if after_removal:
            record.requests_after_endpoint_removal += 1
        result = await self._traffic.send(route, timeout_seconds=self._timeout_seconds)
        self.tally.connections_opened = self._traffic.connections_opened
        self.tally.add(phase, result, reused=route.is_reused, sent_at=sent_at)
        if result.failure is not None:
            ended_at = loop.time() - self._origin
            kind = result.failure.value
            failure = FailedRequest(route.pod.name, phase, kind, sent_at, ended_at, late_seconds, route.is_reused)
            self.tally.failures.append(failure)
        if after_removal and not result.is_ok:
            record.failed_after_endpoint_removal += 1
        if result.failure is not None and len(record.failed_requests) < MAX_FAILURES_PER_POD:
            record.failed_requests.append((sent_at, result.failure.value, phase))
