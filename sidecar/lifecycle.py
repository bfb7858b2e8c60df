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


# Sources that observed the app actually finish: its process gone, every app container gone (the
# native sidecar's SIGTERM), or the app's own word. Only these make an outcome clean. The others
# say when we stopped waiting, or (connections) that the app stopped accepting: a listener that
# closed with no connection left is not an app that finished. uvicorn closes its listener first
# and runs the app's lifespan shutdown after; `simulate` showed a report saying clean, margin
# 6.8 s, for a FastAPI app SIGKILLed 7 s after its listener closed.
MEASURED_SOURCES: Final = frozenset(
    {
        DrainEndSource.PROCESS_EXIT,
        DrainEndSource.SIDECAR_SIGTERM,
        DrainEndSource.APP_REPORT,
    }
)


# When several sources are watching, the drain ends at the event of the most precise one; a less
# precise source's event is recorded but does not end it. A native sidecar's SIGTERM outranks the
# connections: an app may close its listener and still be cleaning up, and only its exit (which
# the kubelet's SIGTERM to the sidecar follows) is the end of its drain. For the same reason the
# app's own report outranks the connections: once the app has reported on POST /drain it is
# watching as well (ShutdownSequence.app_reporting), and its `complete` ends the drain.
DRAIN_SOURCE_PRECEDENCE: Final = (
    DrainEndSource.PROCESS_EXIT,
    DrainEndSource.SIDECAR_SIGTERM,
    DrainEndSource.APP_REPORT,
    DrainEndSource.CONNECTIONS,
)


def outranks(source: DrainEndSource, configured: frozenset[DrainEndSource]) -> bool:
    """True when no watching (`configured`) source is more precise than `source`. The native sidecar's
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


# Why the outcome is what it is, in the report's `outcome_reason`: what was observed, and what not.
FINISHED_BECAUSE: Final = {
    DrainEndSource.PROCESS_EXIT: "the app's process exited",
    DrainEndSource.SIDECAR_SIGTERM: "the kubelet signalled the native sidecar: every app container had exited",
    DrainEndSource.APP_REPORT: "the app reported complete",
}
LISTENER_ONLY: Final = (
    "the app's listener closed with no connection left, but nothing saw the app finish: it may still have "
    "been shutting down; watch its process (shareProcessNamespace and --watch-process) or report complete "
    "(sidecar.integrations)"
)
START_UNSEEN: Final = (
    "the shutdown began at the native sidecar's SIGTERM, with no /prestop call before it: the app containers "
    "had exited, but when, against their grace period, was not seen"
)
NOTHING_WATCHED: Final = (
    "nothing watched the app: no process (run mode, --watch-pid, --watch-process), no native sidecar, "
    "no --app-port, and no report from the app"
)
INTERRUPTED_BY_SIGINT: Final = "a second SIGINT cut the drain short"
UNKNOWN_BECAUSE: Final = {
    DrainEndSource.CONNECTIONS: LISTENER_ONLY,
    DrainEndSource.INTERRUPTED: INTERRUPTED_BY_SIGINT,
}
EXITED_FIRST: Final = "the app exited before any shutdown began"
NO_COMPLETE: Final = "the app had not reported complete by deadline - report reserve"
STILL_RUNNING: Final = "the app was still running at deadline - report reserve"
STILL_LISTENING: Final = "the app's port still had its listener or a connection at deadline - report reserve"


def decide_outcome(
    source: DrainEndSource,
    *,
    watching: frozenset[DrainEndSource],
    app_exit: str | None = None,
    start_seen: bool = True,
) -> tuple[Outcome, str]:
    """The outcome and its reason. Clean only when a source observed the app finish (a listener
    that closed is not that: unknown); timeout when something watched the app (`watching`) and
    it was still running, or had not said it finished, at deadline - reserve; unknown when nothing
    could have seen it; app_exit when the app exited on its own, before its stop signal (a crash,
    not a drain), and `app_exit` says when (EXITED_FIRST, exited_during_hold). `start_seen` False:
    t0 was the drain's end itself (a native sidecar's SIGTERM with no /prestop before it), so the
    drain's length against the deadline is unknown."""
    if app_exit is not None:
        return Outcome.APP_EXIT, app_exit
    if source is DrainEndSource.SIDECAR_SIGTERM and not start_seen:
        return Outcome.UNKNOWN, START_UNSEEN
    if source in MEASURED_SOURCES:
        return Outcome.CLEAN, FINISHED_BECAUSE[source]
    if source is DrainEndSource.DEADLINE and watching:
        return Outcome.TIMEOUT, still_running_because(watching)
    return Outcome.UNKNOWN, UNKNOWN_BECAUSE.get(source, NOTHING_WATCHED)


def exited_during_hold(after_t0_seconds: float) -> str:
    """The reason for an app that exited on its own during the prestop hold: it was never told to
    stop, so it did not drain, and the pod's endpoint was still being removed when it went."""
    return (
        f"the app exited on its own {after_t0_seconds:.2f} s after t0, during the prestop hold, before its stop "
        "signal: a crash, not a drain; requests still routed to the pod for the rest of the hold were refused"
    )


def still_running_because(watching: frozenset[DrainEndSource]) -> str:
    """What the watching sources saw at deadline - reserve (none of them had seen the end)."""
    if watching & {DrainEndSource.PROCESS_EXIT, DrainEndSource.SIDECAR_SIGTERM}:
        return STILL_RUNNING
    if DrainEndSource.APP_REPORT in watching:
        return NO_COMPLETE
    return STILL_LISTENING


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
        self.outcome_reason: str | None = None
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

    @property
    def drained(self) -> bool:
        """False when the app exited on its own before its stop signal (outcome app_exit): the
        drain phase was passed through, but there was no drain to measure or report."""
        return self.outcome is not Outcome.APP_EXIT

    def end_drain(self, source: DrainEndSource, outcome: Outcome, now: float, reason: str | None = None) -> None:
        """Close the drain at `now`, say what decided it (and why: `reason`), and enter the report phase."""
        if self.phase is not Phase.DRAIN:
            raise IllegalTransition(f"the drain cannot end during {self.phase}")
        # An app that exited before its stop signal never drained: no drain end, and no margin. When
        # it exited is in the reason, and in the report's drain_end_observed.
        self.drain_end = None if outcome is Outcome.APP_EXIT else now
        self.drain_end_source = source
        self.outcome = outcome
        self.outcome_reason = reason
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
        """Deadline - drain end, when a source measured the app's end; None when nothing did, when
        the end is not known against the deadline (outcome unknown), or when there was no drain
        (outcome app_exit)."""
        if self.drain_end is None or self.drain_end_source not in MEASURED_SOURCES or self.outcome is Outcome.UNKNOWN:
            return None
        return self.deadline - self.drain_end

    def to_wall(self, monotonic: float) -> float:
        return monotonic + self._wall_offset
