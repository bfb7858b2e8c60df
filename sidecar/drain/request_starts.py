"""request_starts: the requests the app reports it started (POST /drain's "requests_started", a
per-worker count that only grows), turned into arrivals with the report's arrival time, for the
auto hold. Diffing only: it never invents an arrival — a worker's first count is its baseline, and
a count that went down (the worker restarted under the same id) is a new baseline. It reads no
clock of its own and does no I/O."""

from __future__ import annotations

import asyncio
from typing import Final

from sidecar.drain.arrivals import ArrivalLog

# Each worker reports up to ten times a second; with many workers the log's MAX_BATCHES would hold
# less than the lookback (and the rate read over the lookback would be too low). Arrivals this
# close to the last batch join it: at most 20 batches a second, 204 s of MAX_BATCHES.
MERGE_SECONDS: Final = 0.05


class RequestStarts:
    """Arrivals from the app's per-worker request counts. `arrivals` starts at the first count any
    worker reports (before that the app was not counting, so its rate is not diluted by the time
    the sidecar waited for the app); `arrived` is set at each arrival (the hold clears it)."""

    def __init__(self) -> None:
        self.arrivals = ArrivalLog(0.0)
        self.arrived = asyncio.Event()
        self.is_reported = False  # True once a worker has sent a count: the app counts its requests
        self._counts: dict[str, int] = {}

    def update(self, worker: str, count: int, now: float) -> int:
        """The arrivals `worker`'s `count` adds at `now`, added to the log: what it grew by since
        the worker's last count; 0 for its first count and for a count that went down (a restarted
        worker's first requests are missed, never a bogus burst)."""
        if not self.is_reported:
            self.is_reported = True
            self.arrivals.started_at = now
        previous = self._counts.get(worker)
        self._counts[worker] = count
        if previous is None or count <= previous:
            return 0
        new = count - previous
        self.arrivals.add(now, new, merge_within_seconds=MERGE_SECONDS)
        self.arrived.set()
        return new

    def forget(self, worker: str) -> None:
        """A worker no longer tracked (its slot went to a new worker): its next count is a baseline."""
        self._counts.pop(worker, None)
