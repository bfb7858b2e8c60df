"""The time budget of one shutdown, and the only place that does deadline arithmetic: the grace
period, prestop delay and report reserve, the rule that they fit together, the absolute deadlines
derived from t0, the time left, waiting on events under a deadline, and the watchdog that ends the
process at the deadline when the event loop is stuck. Deadlines are time.monotonic() values."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import threading
import time
from collections.abc import Callable
from typing import Final

# Exit status when the watchdog had to end a process whose event loop stopped answering.
EXIT_WATCHDOG: Final = 70
# The watchdog fires this long before the kubelet's SIGKILL would.
WATCHDOG_LEAD_SECONDS: Final = 0.01
# Inside the report phase: network sinks stop this long before the deadline so the local write
# and the exit still fit, and every part is abandoned this long before it: the process must be
# gone before the kubelet's SIGKILL, or the exit status and the last log lines are lost with it.
SINK_RESERVE_SECONDS: Final = 0.2
EXIT_RESERVE_SECONDS: Final = 0.05
# A network call is given at least this long, even when the deadline is closer: a timeout of
# zero would mean "block forever" to some clients.
MINIMUM_CALL_TIMEOUT_SECONDS: Final = 0.05
# The least report reserve that lets the report be written: the drain ends at deadline - reserve,
# and the watchdog fires WATCHDOG_LEAD_SECONDS before the deadline. The local write and the log
# line take milliseconds; the rest is headroom for a loaded node. Below it, --report-reserve
# exits 2 (with 0 the watchdog fired before the report phase began: exit 70, no report).
MIN_REPORT_RESERVE_SECONDS: Final = 0.1
# No setting in seconds goes past this (a week): far longer than any grace period, and short
# enough for every timer and sleep (time.sleep(1e10) raises OverflowError in the watchdog).
MAX_SECONDS: Final = 7 * 24 * 3600


@dataclasses.dataclass(frozen=True)
class Budget:
    """How the pod's grace period is spent: the prestop delay first (readiness failing, the app
    still serving), then the drain, and the report reserve last."""

    grace_period_seconds: float
    prestop_delay_seconds: float
    report_reserve_seconds: float

    def problem(self, hold: str = "prestop delay") -> str | None:
        """Why this budget cannot work, or None. The one timing rule, for the sidecar's settings,
        simulate's flags and the chart's template alike. `hold` names the prestop delay in the
        message (an auto hold is budgeted at its maximum)."""
        if self.prestop_delay_seconds + self.report_reserve_seconds >= self.grace_period_seconds:
            return (
                f"{hold} ({self.prestop_delay_seconds:g}s) + report reserve "
                f"({self.report_reserve_seconds:g}s) must be less than the grace period "
                f"({self.grace_period_seconds:g}s), or nothing is left to drain"
            )
        return None

    @property
    def prestop_delay_limit_seconds(self) -> float:
        """The prestop delay must stay below this: the grace period less the report reserve."""
        return self.grace_period_seconds - self.report_reserve_seconds

    def deadline(self, t0: float) -> float:
        """t0 + grace period: the kubelet's SIGKILL."""
        return t0 + self.grace_period_seconds

    def prestop_delay_deadline(self, t0: float) -> float:
        """When the app is told to stop."""
        return t0 + self.prestop_delay_seconds

    def drain_deadline(self, t0: float) -> float:
        """The app must have finished by now; later, only the report may run."""
        return self.deadline(t0) - self.report_reserve_seconds


def seconds_left(deadline: float, *, floor: float = 0.0) -> float:
    """Seconds from now until `deadline`, never below `floor`."""
    return max(floor, deadline - time.monotonic())


def call_timeout(deadline: float) -> float:
    """The timeout for a blocking network call that must end by `deadline`."""
    return seconds_left(deadline, floor=MINIMUM_CALL_TIMEOUT_SECONDS)


async def wait_for_any(events: tuple[asyncio.Event, ...], deadline: float) -> bool:
    """Wait until one of `events` is set or `deadline` passes; True if an event won."""
    if any(event.is_set() for event in events):
        return True
    if seconds_left(deadline) <= 0:
        return False  # at once: no waiter task or timer for a deadline already past (a delay of 0)
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        done, _ = await asyncio.wait(waiters, timeout=seconds_left(deadline), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
    return bool(done)


class DeadlineWatchdog:
    """Last resort, on its own thread: if the loop is stuck (a C extension, a blocked write to
    stderr), end the process just before the deadline rather than be SIGKILLed without a word.
    Ends the whole process: used by the mode that owns the process, never by library code.

    The thread is started before t0 and only armed at t0: a first thread start costs a few
    hundred microseconds, which the SIGTERM -> readiness 503 path must not pay."""

    def __init__(self) -> None:
        self._deadline = 0.0
        self._armed = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="deadline-watchdog", daemon=True)
        # Called on the watchdog's thread just before it ends the process: run mode kills the
        # app's process group here, or the app would outlive its wrapper as an orphan.
        self.last_words: list[Callable[[], None]] = []

    def start(self) -> None:
        self._thread.start()

    def arm(self, deadline: float) -> None:
        """Fire at `deadline` minus a small lead; only the first call counts."""
        if not self._armed.is_set():
            self._deadline = deadline
            self._armed.set()

    def _watch(self) -> None:
        self._armed.wait()
        # In steps: one sleep of a huge value would raise OverflowError and end this thread silently.
        while (left := seconds_left(self._deadline - WATCHDOG_LEAD_SECONDS)) > 0:
            time.sleep(min(left, 3600.0))
        for last_word in self.last_words:
            with contextlib.suppress(Exception):
                last_word()
        os.write(2, b'{"level":"error","msg":"watchdog: event loop did not finish before the deadline"}\n')
        os._exit(EXIT_WATCHDOG)
