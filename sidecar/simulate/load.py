"""The load generator: an open loop of GETs at a fixed rate, each on a new connection to the pod
the balancer picks (many clients behind kube-proxy), and the tally of what became of them by the
phase the pod was in. A slow pod does not slow the schedule: that is how real clients behave."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
from typing import Final

from sidecar.simulate.client import Failure, Result, http_get
from sidecar.simulate.endpoints import Balancer
from sidecar.simulate.kubelet import Pod
from sidecar.simulate.records import RequestPhase

NO_ENDPOINTS: Final = "no_endpoints"  # the balancer knew of no ready pod: kube-proxy rejects
PHASES: Final = (*(phase.value for phase in RequestPhase), NO_ENDPOINTS)
KINDS: Final = tuple(failure.value for failure in Failure)


@dataclasses.dataclass
class Tally:
    sent: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)  # by phase
    failed: collections.Counter[tuple[str, str]] = dataclasses.field(default_factory=collections.Counter)

    def add(self, phase: str, result: Result) -> None:
        self.sent[phase] += 1
        if result.failure is not None:
            self.failed[phase, result.failure.value] += 1

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
                "by_kind": {kind: self.failed[phase, kind] for kind in KINDS},
            }
            for phase in PHASES
        }
        return {"sent": self.total_sent, "failed": self.total_failed, "by_kind": by_kind, "by_phase": by_phase}


class LoadGenerator:
    def __init__(self, balancer: Balancer[Pod], rate_per_second: float, timeout_seconds: float, tally: Tally) -> None:
        self.tally = tally
        self._balancer = balancer
        self._interval = 1.0 / rate_per_second
        self._timeout_seconds = timeout_seconds
        self._inflight: set[asyncio.Task[None]] = set()

    async def run(self, stop: asyncio.Event) -> None:
        """Send on schedule until `stop` is set; then wait for the requests still in flight."""
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        try:
            while not stop.is_set():
                task = asyncio.create_task(self._request())
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

    async def _request(self) -> None:
        pod = self._balancer.pick()
        if pod is None:
            self.tally.add(NO_ENDPOINTS, Result(None, Failure.REFUSED))
            return
        # The phase when the request leaves: what it would meet on arrival.
        phase = pod.record.request_phase().value
        result = await http_get(pod.record.app_port, "/", timeout_seconds=self._timeout_seconds)
        self.tally.add(phase, result)
