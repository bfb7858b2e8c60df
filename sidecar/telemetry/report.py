"""The final report: one JSON document (what /status shows at the end), delivered to every sink
within the time left, then written to the termination log and logged as one line. Shaped like the
OpenTelemetry SDK's MeterProvider.shutdown: runs once, one deadline for all parts, keeps going
when a part fails, and names every failure in `errors`."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, Final, NotRequired, TypedDict

from sidecar.deadline import EXIT_RESERVE_SECONDS, SINK_RESERVE_SECONDS
from sidecar.lifecycle import SHUTDOWN_PHASES, DrainEndSource, Timeline
from sidecar.logs import LOGGER_NAME
from sidecar.telemetry.offload import run_in_thread

# Kubernetes keeps at most 4096 bytes of /dev/termination-log (and 12 KiB across all containers).
TERMINATION_LOG_MAX_BYTES: Final = 4096

logger = logging.getLogger(LOGGER_NAME)

ShutdownEvent = tuple[str, float, Mapping[str, str]]  # for the trace: name, Unix seconds, attributes
ReportSink = Callable[[Mapping[str, Any]], None]  # blocking; run in a thread under the deadline


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


class AppDocument(TypedDict):
    """The app's own reports (POST /drain). In-flight counts are sums over the workers."""

    inflight: int
    inflight_at_stop: int | None  # when the drain began: the app was told to stop
    inflight_peak: int | None  # the highest sum from t0 to the drain's end
    complete_at: float | None  # when the last worker said complete (or was seen gone)
    workers: dict[str, WorkerDocument]  # by the "worker" id; empty when no report named one


class Report(TypedDict):
    """The one document of SPEC.md's final report: what /status shows, and at the end what the
    termination log, the log line, the span and the Pushgateway push carry. Times are Unix
    seconds; durations are *_seconds."""

    phase: str
    trigger: str | None
    outcome: str | None
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
    errors: list[str]
    drain_end_observed: NotRequired[dict[str, float]]  # every source's first event, seconds after t0
    app_exit_status: NotRequired[int | None]  # run mode only
    stop_signal: NotRequired[str | None]  # run mode only: the signal the app was sent, None until sent


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


@dataclasses.dataclass
class WorkerActivity:
    inflight: int = 0
    complete: bool = False
    exited: bool = False
    complete_at: float | None = None  # Unix seconds

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
    has_app_process: bool = False  # run mode: the report then has app_exit_status and stop_signal
    app_exit_status: int | None = None
    stop_signal: str | None = None

    def add_event(self, name: str, unix_seconds: float | None = None, **attributes: str) -> None:
        self.events.append((name, time.time() if unix_seconds is None else unix_seconds, attributes))

    def add_late_connections(self, count: int, after_t0_seconds: float) -> None:
        self.late_connections += count
        self.last_late_connection_seconds = after_t0_seconds


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def phases_document(timeline: Timeline, now: float) -> dict[str, PhaseDocument]:
    phases: dict[str, PhaseDocument] = {}
    for phase in SHUTDOWN_PHASES:
        record = timeline.records.get(phase)
        if record is None:
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
    covered = None if last_late is None else last_late <= budget.prestop_delay_seconds
    report: Report = {
        "phase": timeline.phase.value,
        "trigger": None if timeline.trigger is None else timeline.trigger.value,
        "outcome": None if timeline.outcome is None else timeline.outcome.value,
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
        "errors": list(seen.errors),
    }
    if timeline.t0 is not None and drain_end_observed:
        t0 = timeline.t0
        report["drain_end_observed"] = {source.value: round(at - t0, 6) for source, at in drain_end_observed.items()}
    if seen.has_app_process:
        report["app_exit_status"] = seen.app_exit_status
        report["stop_signal"] = seen.stop_signal
    return report


def termination_log_text(document: Mapping[str, Any]) -> str:
    """The document as compact JSON of at most 4096 bytes.

    Too long (many workers, many errors), it degrades in steps and says so with "truncated": the
    app's workers dropped, errors shortened,
    then phases dropped, then only the verdict kept: the outcome always survives.
    """
    steps: list[Callable[[dict[str, Any]], dict[str, Any]]] = [
        lambda d: d,
        lambda d: {**without_workers(d), "truncated": True},
        lambda d: {**without_workers(d), "errors": [e[:160] for e in d.get("errors", [])[:5]], "truncated": True},
        lambda d: {
            **without_workers(d),
            "errors": [e[:80] for e in d.get("errors", [])[:2]],
            "phases": {},
            "truncated": True,
        },
        lambda d: (
            {key: d.get(key) for key in ("outcome", "trigger", "drain_end_source", "margin_seconds", "t0", "deadline")}
            | {"truncated": True}
        ),
    ]
    text = ""
    for shrink in steps:
        text = json.dumps(shrink(dict(document)), separators=(",", ":"), default=str)
        if len(text.encode()) <= TERMINATION_LOG_MAX_BYTES:
            return text
    return text.encode()[:TERMINATION_LOG_MAX_BYTES].decode(errors="ignore")


def without_workers(document: dict[str, Any]) -> dict[str, Any]:
    """The document with the app section's per-worker entries dropped (256 of them would not fit)."""
    app = document.get("app")
    return {**document, "app": {**app, "workers": {}}} if isinstance(app, dict) and app.get("workers") else document


def write_termination_log(path: str, text: str) -> None:
    with open(path, "w", encoding="utf-8") as stream:
        stream.write(text)


def describe_error(part: str, exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return f"{part}: gave up at the deadline"
    return f"{part}: {type(exc).__name__}: {exc}"


async def deliver_report(
    document: Report,
    *,
    sinks: Mapping[str, ReportSink],
    termination_log: str | None,
    deadline: float,
) -> list[str]:
    """Send `document` to every sink at once, then the termination log, then one log line.

    `deadline` is the pod's (time.monotonic()); no part runs past it. Returns the errors, which
    are also added to document["errors"] before the local write so the file names them.
    """
    errors = document["errors"]
    sink_deadline = deadline - SINK_RESERVE_SECONDS

    async def deliver(name: str, sink: ReportSink) -> None:
        try:
            await run_in_thread(lambda: sink(document), deadline=sink_deadline, name=f"report-{name}")
        except Exception as exc:
            errors.append(describe_error(name, exc))

    await asyncio.gather(*(deliver(name, sink) for name, sink in sinks.items()))
    if termination_log is not None:
        text = termination_log_text(document)
        try:
            await run_in_thread(
                lambda: write_termination_log(termination_log, text),
                deadline=deadline - EXIT_RESERVE_SECONDS,
                name="report-termination-log",
            )
        except Exception as exc:
            errors.append(describe_error(f"termination log {termination_log}", exc))
    logger.info("shutdown report", extra={"fields": {"report": document}})
    return errors
