"""The shutdown timeline: one phase enum with its legal transitions, t0, the deadline, and when each
phase started and ended. Pure state: no asyncio, no I/O; callers pass `now` (time.monotonic()),
and wall-clock time appears only through to_wall(), for metrics and reports."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from enum import StrEnum
from typing import Final

from sidecar.deadline import Budget


class Phase(StrEnum):
    RUNNING = "running"
    PRESTOP_DELAY = "prestop_delay"
    DRAIN = "drain"
    REPORT = "report"
    DONE = "done"


# Each phase has exactly one successor; nothing goes backwards and nothing is skipped, so the
# report always holds the three shutdown phases, however short.
NEXT_PHASE: Final[dict[Phase, Phase]] = {
    Phase.RUNNING: Phase.PRESTOP_DELAY,
    Phase.PRESTOP_DELAY: Phase.DRAIN,
    Phase.DRAIN: Phase.REPORT,
    Phase.REPORT: Phase.DONE,
}
SHUTDOWN_PHASES: Final = (Phase.PRESTOP_DELAY, Phase.DRAIN, Phase.REPORT)


class Trigger(StrEnum):
    PRESTOP = "prestop"
    SIGNAL = "signal"
    APP_EXIT = "app_exit"  # run mode: the app exited before any shutdown began


class DrainEndSource(StrEnum):
    PROCESS_EXIT = "process_exit"
    SIDECAR_SIGTERM = "sidecar_sigterm"
    CONNECTIONS = "connections"
    APP_REPORT = "app_report"
    DEADLINE = "deadline"  # nothing observed before deadline - report reserve
    INTERRUPTED = "interrupted"  # a second SIGINT cut the shutdown short


# Sources that observed the app actually finish; the others only say when we stopped waiting.
MEASURED_SOURCES: Final = frozenset(
    {
        DrainEndSource.PROCESS_EXIT,
        DrainEndSource.SIDECAR_SIGTERM,
        DrainEndSource.CONNECTIONS,
        DrainEndSource.APP_REPORT,
    }
)


# When several sources are configured, the drain ends at the event of the most precise one; a less
# precise source's event is recorded but does not end it. A native sidecar's SIGTERM outranks the
# connections: an app may close its listener and still be cleaning up, and only its exit (which
# the kubelet's SIGTERM to the sidecar follows) is the end of its drain. `simulate` showed a
# report saying clean for an app that was SIGKILLed after its listener closed.
DRAIN_SOURCE_PRECEDENCE: Final = (
    DrainEndSource.PROCESS_EXIT,
    DrainEndSource.SIDECAR_SIGTERM,
    DrainEndSource.CONNECTIONS,
    DrainEndSource.APP_REPORT,
)


def outranks(source: DrainEndSource, configured: frozenset[DrainEndSource]) -> bool:
    """True when no configured source is more precise than `source`. The native sidecar's
    SIGTERM always ends the drain: the app containers have exited, and its SIGKILL follows soon."""
    if source is DrainEndSource.SIDECAR_SIGTERM or source not in DRAIN_SOURCE_PRECEDENCE:
        return True
    rank = DRAIN_SOURCE_PRECEDENCE.index(source)
    return not any(other in configured for other in DRAIN_SOURCE_PRECEDENCE[:rank])


class Outcome(StrEnum):
    CLEAN = "clean"
    TIMEOUT = "timeout"
    UNKNOWN = "unknown"
    APP_EXIT = "app_exit"


class IllegalTransition(RuntimeError):
    pass


def decide_outcome(source: DrainEndSource, *, app_watched: bool, app_exited_first: bool = False) -> Outcome:
    """Clean when a source saw the drain end; timeout when we watched the app and it was still
    running at deadline - reserve; unknown when nothing could have seen it; app_exit when the
    app had exited on its own before any shutdown began (a crash, not a drain)."""
    if app_exited_first:
        return Outcome.APP_EXIT
    if source in MEASURED_SOURCES:
        return Outcome.CLEAN
    if source is DrainEndSource.DEADLINE and app_watched:
        return Outcome.TIMEOUT
    return Outcome.UNKNOWN


@dataclasses.dataclass
class PhaseRecord:
    start: float
    end: float | None = None

    def duration_seconds(self, now: float) -> float:
        return (now if self.end is None else self.end) - self.start


PhaseListener = Callable[[Phase, Phase, "Timeline"], None]


class Timeline:
    def __init__(self, budget: Budget, *, wall_clock: Callable[[], float] = time.time) -> None:
        self.budget = budget
        self.phase = Phase.RUNNING
        self.trigger: Trigger | None = None
        self.t0: float | None = None
        self.records: dict[Phase, PhaseRecord] = {}
        self.drain_end: float | None = None
        self.drain_end_source: DrainEndSource | None = None
        self.outcome: Outcome | None = None
        self._wall_clock = wall_clock
        self._wall_offset = 0.0  # wall - monotonic, fixed at t0 so every timestamp agrees
        self._listeners: list[PhaseListener] = []

    def add_listener(self, listener: PhaseListener) -> None:
        self._listeners.append(listener)

    @property
    def is_shutting_down(self) -> bool:
        return self.phase is not Phase.RUNNING

    def begin(self, trigger: Trigger, now: float) -> bool:
        """Set t0 and enter prestop_delay; False (and nothing changes) when already begun."""
        if self.is_shutting_down:
            return False
        self.trigger = trigger
        self.t0 = now
        self._wall_offset = self._wall_clock() - now
        self.advance(Phase.PRESTOP_DELAY, now)
        return True

    def advance(self, to: Phase, now: float) -> None:
        current = self.phase
        if NEXT_PHASE.get(current) is not to:
            raise IllegalTransition(f"{current} cannot be followed by {to}")
        if current in self.records:
            self.records[current].end = now
        if to is not Phase.DONE:
            self.records[to] = PhaseRecord(start=now)
        self.phase = to
        for listener in self._listeners:
            listener(current, to, self)

    def end_drain(self, source: DrainEndSource, outcome: Outcome, now: float) -> None:
        """Close the drain at `now`, say what decided it, and enter the report phase."""
        if self.phase is not Phase.DRAIN:
            raise IllegalTransition(f"the drain cannot end during {self.phase}")
        self.drain_end = now
        self.drain_end_source = source
        self.outcome = outcome
        self.advance(Phase.REPORT, now)

    # --- derived times (monotonic) -------------------------------------------------------------

    @property
    def started_at(self) -> float:
        """t0; raises IllegalTransition before the shutdown has begun."""
        if self.t0 is None:
            raise IllegalTransition("the shutdown has not begun")
        return self.t0

    @property
    def deadline(self) -> float:
        return self.budget.deadline(self.started_at)

    @property
    def prestop_delay_deadline(self) -> float:
        return self.budget.prestop_delay_deadline(self.started_at)

    @property
    def drain_deadline(self) -> float:
        """The app must have finished by now; later, only the report may run."""
        return self.budget.drain_deadline(self.started_at)

    @property
    def margin_seconds(self) -> float | None:
        """Deadline - drain end, when a source measured the end; None when nothing did."""
        if self.drain_end is None or self.drain_end_source not in MEASURED_SOURCES:
            return None
        return self.deadline - self.drain_end

    def to_wall(self, monotonic: float) -> float:
        return monotonic + self._wall_offset
