"""The final report: one typed JSON document (what /status shows, at the end the final report),
built in one place from the timeline and what the parts observed. Sending it is
sidecar.telemetry.delivery's job; this module does no I/O."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from typing import Final, NotRequired, TypedDict

from sidecar.lifecycle import SHUTDOWN_PHASES, DrainEndSource, Phase, Timeline

# Names per list of the app's background tasks kept in the report (the termination log's 4096 bytes).
MAX_TASKS_IN_REPORT: Final = 8
ShutdownEvent = tuple[str, float, Mapping[str, str]]  # for the trace: name, Unix seconds, attributes


class PhaseDocument(TypedDict):
    start: float | None
    end: float | None
    duration_seconds: float | None


class ConnectionsDocument(TypedDict):
    at_t0: int | None
    at_stop: int | None
    at_drain_end: int | None
    at_stop_opened_before_t0: int | None


class WorkerDocument(TypedDict):
    inflight: int
    complete: bool
    exited: bool  # its process was seen gone (same PID namespace only) or it said "exit"
    complete_at: float | None


class TasksDocument(TypedDict):
    """What the app's lifespan helper did with its background tasks, over its workers: the names
    (at most MAX_TASKS_IN_REPORT a list) and the longest wait."""

    finished: list[str]  # ended on their own (waited for)
    cancelled: list[str]  # cancelled, then ended
    stuck: list[str]  # ignored their cancellation
    waited_seconds: float | None


class AppDocument(TypedDict):
    """The app's own reports (POST /drain). In-flight counts are sums over the workers."""

    inflight: int
    inflight_at_stop: int | None  # when the drain began: the app was told to stop
    inflight_peak: int | None  # the highest sum from t0 to the drain's end
    complete_at: float | None  # when the last worker said complete (or was seen gone)
    workers: dict[str, WorkerDocument]  # by the "worker" id; empty when no report named one
    tasks: TasksDocument | None  # None unless a worker reported its background tasks


class HoldDocument(TypedDict):
    """How the prestop hold ended (or, while it lasts, how it stands): fixed, or auto on the
    arrivals counted before and after t0 (sidecar.hold)."""

    mode: str  # fixed | auto
    released_by: str | None  # fixed | quiet | maximum | interrupted; None while holding
    duration_seconds: float | None  # t0 -> release; None while holding
    maximum_seconds: float  # the fixed delay, or the auto hold's bound: it ends by t0 + this
    window_seconds: float | None  # auto: the quiet stretch that ends it; None: hold to the maximum
    rate_per_second: float | None  # auto: arrivals a second before t0, of the evidence used
    longest_gap_seconds: float | None  # auto: the longest quiet stretch before t0, of the evidence used
    arrivals_after_t0: int  # new connections after t0
    requests_after_t0: int | None  # requests the app reported it started after t0; None: it reports none
    last_arrival_seconds: float | None  # after t0: the last new connection or reported request start
    counting: str  # "ok", or why the connection counts are partial or missing
    # auto: the stream the window came from, "requests" (the app's reported request starts) or
    # "connections"; None for a fixed hold or when nothing could be counted
    evidence: str | None
    # auto: the --prestop-evidence configured (connections | requests); None for a fixed hold
    evidence_mode: str | None


class Report(TypedDict):
    """The one document of SPEC.md's final report: what /status shows, and at the end what the
    termination log, the log line, the span and the Pushgateway push carry. Times are Unix
    seconds; durations are *_seconds."""

    phase: str
    trigger: str | None
    outcome: str | None
    outcome_reason: str | None  # what was observed, and what not (lifecycle.decide_outcome)
    drain_end_source: str | None
    grace_period_seconds: float
    prestop_delay_seconds: float
    report_reserve_seconds: float
    t0: float | None
    deadline: float | None
    time_left_seconds: float | None
    drain_end: float | None
    margin_seconds: float | None
    phases: dict[str, PhaseDocument]
    late_connections: int
    last_late_connection_seconds: float | None
    prestop_delay_covered_late_connections: bool | None
    # Established connections to the app port (--app-port), or None when not watched.
    connections: ConnectionsDocument | None
    app: AppDocument | None  # None until the app has reported on POST /drain
    hold: HoldDocument | None  # None before t0
    errors: list[str]
    drain_end_observed: NotRequired[dict[str, float]]  # every source's first event, seconds after t0
    app_exit_status: NotRequired[int | None]  # run mode only
    stop_signal: NotRequired[str | None]  # run mode only: the signal the app was sent, None until sent
    # run mode only: processes of the app's group besides the app alive at the report (SIGKILLed
    # then); None until the report
    processes_left_behind: NotRequired[int | None]


@dataclasses.dataclass
class ConnectionCounts:
    """Established connections to the app port at t0, at the stop (the app's stop signal) and at
    the drain end; None until that moment has come."""

    at_t0: int | None = None
    at_stop: int | None = None
    at_drain_end: int | None = None
    # Of those at the stop, the ones already open at t0: keep-alive connections that endpoint
    # removal never moves (kube-proxy balances connections, not requests). Non-zero means the
    # app must close them itself from t0 on (Connection: close), or it drops their requests.
    at_stop_opened_before_t0: int | None = None


@dataclasses.dataclass(frozen=True)
class TaskOutcome:
    """One worker's background tasks at its shutdown, as it reported them (tasks_document sorts
    the names when it merges the workers')."""

    finished: tuple[str, ...] = ()
    cancelled: tuple[str, ...] = ()
    stuck: tuple[str, ...] = ()
    waited_seconds: float | None = None


@dataclasses.dataclass
class WorkerActivity:
    inflight: int = 0
    complete: bool = False
    exited: bool = False
    complete_at: float | None = None  # Unix seconds
    tasks: TaskOutcome | None = None

    @property
    def is_finished(self) -> bool:
        return self.complete or self.exited


@dataclasses.dataclass
class AppActivity:
    """What the app said on POST /drain, per worker (key "" for reports that name none), kept by
    sidecar.drain.app_report."""

    workers: dict[str, WorkerActivity] = dataclasses.field(default_factory=dict)
    inflight_at_stop: int | None = None
    inflight_peak: int | None = None
    complete_at: float | None = None

    @property
    def inflight(self) -> int:
        return sum(worker.inflight for worker in self.workers.values())


@dataclasses.dataclass
class Observations:
    """What the sidecar's parts saw, kept for the report and the trace. One object, handed to each
    part (as uvicorn hands its ServerState around), so the report is built in one place."""

    late_connections: int = 0
    last_late_connection_seconds: float | None = None
    errors: list[str] = dataclasses.field(default_factory=list)  # sources that could not be used
    events: list[ShutdownEvent] = dataclasses.field(default_factory=list)
    connections: ConnectionCounts | None = None  # set when the app port is watched
    app: AppActivity = dataclasses.field(default_factory=AppActivity)  # POST /drain
    hold: Callable[[float], HoldDocument | None] = lambda now: None  # sidecar.hold's view at `now`
    has_app_process: bool = False  # run mode: the report then has app_exit_status and stop_signal
    app_exit_status: int | None = None
    stop_signal: str | None = None
    processes_left_behind: int | None = None

    def add_event(self, name: str, unix_seconds: float | None = None, **attributes: str) -> None:
        self.events.append((name, time.time() if unix_seconds is None else unix_seconds, attributes))

    def add_late_connections(self, count: int, after_t0_seconds: float) -> None:
        self.late_connections += count
        self.last_late_connection_seconds = after_t0_seconds


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def phases_document(timeline: Timeline, now: float) -> dict[str, PhaseDocument]:
    """Each shutdown phase begun so far. The drain of an app that exited before its stop signal
    (outcome app_exit) is there with no times: it was passed through, not a drain of 0 s."""
    phases: dict[str, PhaseDocument] = {}
    for phase in SHUTDOWN_PHASES:
        record = timeline.records.get(phase)
        if record is None:
            continue
        if phase is Phase.DRAIN and not timeline.drained:
            phases[phase.value] = {"start": None, "end": None, "duration_seconds": None}
            continue
        phases[phase.value] = {
            "start": _round(timeline.to_wall(record.start)),
            "end": None if record.end is None else _round(timeline.to_wall(record.end)),
            "duration_seconds": _round(record.duration_seconds(now)),
        }
    return phases


def connections_document(counts: ConnectionCounts) -> ConnectionsDocument:
    return {
        "at_t0": counts.at_t0,
        "at_stop": counts.at_stop,
        "at_drain_end": counts.at_drain_end,
        "at_stop_opened_before_t0": counts.at_stop_opened_before_t0,
    }


def tasks_document(outcomes: list[TaskOutcome]) -> TasksDocument | None:
    """The workers' task outcomes merged: each name once, at most MAX_TASKS_IN_REPORT a list (the
    termination log has 4096 bytes), and the longest wait."""
    if not outcomes:
        return None
    waits = [outcome.waited_seconds for outcome in outcomes if outcome.waited_seconds is not None]

    def merged(names: list[str]) -> list[str]:
        return sorted(set(names))[:MAX_TASKS_IN_REPORT]

    return {
        "finished": merged([name for outcome in outcomes for name in outcome.finished]),
        "cancelled": merged([name for outcome in outcomes for name in outcome.cancelled]),
        "stuck": merged([name for outcome in outcomes for name in outcome.stuck]),
        "waited_seconds": _round(max(waits)) if waits else None,
    }


def app_document(app: AppActivity) -> AppDocument | None:
    if not app.workers:
        return None
    named = {key: worker for key, worker in app.workers.items() if key}
    return {
        "inflight": app.inflight,
        "inflight_at_stop": app.inflight_at_stop,
        "inflight_peak": app.inflight_peak,
        "complete_at": _round(app.complete_at),
        "workers": {
            key: {
                "inflight": worker.inflight,
                "complete": worker.complete,
                "exited": worker.exited,
                "complete_at": _round(worker.complete_at),
            }
            for key, worker in named.items()
        },
        "tasks": tasks_document([worker.tasks for worker in app.workers.values() if worker.tasks is not None]),
    }


def build_report(
    timeline: Timeline,
    now: float,
    observations: Observations | None = None,
    drain_end_observed: Mapping[DrainEndSource, float] | None = None,
) -> Report:
    """What /status shows; at the end of the shutdown, the final report. `drain_end_observed`:
    each drain-end source's first event (time.monotonic())."""
    seen = observations or Observations()
    budget = timeline.budget
    begun = timeline.t0 is not None
    last_late = seen.last_late_connection_seconds
    hold = seen.hold(now)
    held = budget.prestop_delay_seconds
    if hold is not None and hold["duration_seconds"] is not None:
        held = hold["duration_seconds"]  # an auto hold: what it lasted, not its bound
    covered = None if last_late is None else last_late <= held
    report: Report = {
        "phase": timeline.phase.value,
        "trigger": None if timeline.trigger is None else timeline.trigger.value,
        "outcome": None if timeline.outcome is None else timeline.outcome.value,
        "outcome_reason": timeline.outcome_reason,
        "drain_end_source": None if timeline.drain_end_source is None else timeline.drain_end_source.value,
        "grace_period_seconds": budget.grace_period_seconds,
        "prestop_delay_seconds": budget.prestop_delay_seconds,
        "report_reserve_seconds": budget.report_reserve_seconds,
        "t0": _round(timeline.to_wall(timeline.started_at)) if begun else None,
        "deadline": _round(timeline.to_wall(timeline.deadline)) if begun else None,
        "time_left_seconds": _round(timeline.deadline - now) if begun else None,
        "drain_end": None if timeline.drain_end is None else _round(timeline.to_wall(timeline.drain_end)),
        "margin_seconds": _round(timeline.margin_seconds),
        "phases": phases_document(timeline, now),
        "late_connections": seen.late_connections,
        "last_late_connection_seconds": _round(last_late),
        "prestop_delay_covered_late_connections": covered,
        "connections": None if seen.connections is None else connections_document(seen.connections),
        "app": app_document(seen.app),
        "hold": hold,
        "errors": list(seen.errors),
    }
    if timeline.t0 is not None and drain_end_observed:
        t0 = timeline.t0
        report["drain_end_observed"] = {source.value: round(at - t0, 6) for source, at in drain_end_observed.items()}
    if seen.has_app_process:
        report["app_exit_status"] = seen.app_exit_status
        report["stop_signal"] = seen.stop_signal
        report["processes_left_behind"] = seen.processes_left_behind
    return report
