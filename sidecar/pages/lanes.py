"""One lane per pod: its shutdown as segments (hold, drain, the sidecar's report) and marks (stop
signal, balancer, SIGKILL, deadline, failed requests) in seconds after its t0, from a sidecar's
final report or from a rehearsed pod of `simulate --json`. Data only; sidecar.pages.svg draws it."""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Mapping
from typing import Any, Final

from sidecar.pages import words
from sidecar.pages.words import after_t0, number, phase, seconds

Document = Mapping[str, Any]

HOLD: Final = "hold"  # preStop hook / prestop delay: the app serves, its stop signal held
DRAIN: Final = "drain"  # the app has its stop signal and drains
SIDECAR: Final = "sidecar"  # after the app: the sidecar's report and exit


@dataclasses.dataclass(frozen=True)
class Segment:
    start: float
    end: float
    kind: str  # HOLD, DRAIN or SIDECAR
    label: str


@dataclasses.dataclass(frozen=True)
class Mark:
    at: float
    kind: str  # "stop", "endpoint", "sigkill", "late", "pinned"
    label: str


@dataclasses.dataclass(frozen=True)
class Lane:
    name: str
    grace_seconds: float
    segments: list[Segment]
    marks: list[Mark]
    failures: list[tuple[float, str]]  # failed requests: seconds after t0, kind
    problem: bool
    status: str  # the outcome in a word or three, shown beside the name
    line: str  # the one-line summary
    margin_seconds: float | None = None
    note: str = ""  # e.g. when the pod was deleted in the rehearsal

    @property
    def end_seconds(self) -> float:
        ends = [segment.end for segment in self.segments] + [mark.at for mark in self.marks]
        return max([self.grace_seconds, *ends])


def segment(start: float | None, end: float | None, kind: str, label: str, why: str | None = None) -> list[Segment]:
    """A segment labelled with its length ("drain 0.16 s") and, when known, why it ended."""
    if start is None or end is None or end < start:
        return []
    return [Segment(start, end, kind, f"{label} {seconds(end - start)}" + (f" ({why})" if why else ""))]


def pinned_mark(report: Document | None, stop: float | None) -> list[Mark]:
    """Keep-alive connections from before t0 still open at the app's stop: endpoint removal never
    moves them, so an app that stops then drops their requests."""
    connections = report.get("connections") if report is not None else None
    pinned = connections.get("at_stop_opened_before_t0") if isinstance(connections, dict) else None
    if stop is None or not isinstance(pinned, int) or pinned <= 0:
        return []
    return [Mark(stop, "pinned", f"{pinned} pinned: keep-alive connections from before t0 still open at the stop")]


def report_lane(name: str, report: Document) -> Lane:
    """A real pod's lane, from its sidecar's final report (times after the report's t0)."""
    # A report cut to its last keys at 4096 bytes keeps t0 and the deadline, not the grace period.
    grace = number(report.get("grace_period_seconds")) or after_t0(report, report.get("deadline")) or 0.0
    stop = words.stop_after_t0(report)
    hold = words.hold_seconds(report)
    drain_end = after_t0(report, report.get("drain_end"))
    drain = phase(report, "drain")
    if drain_end is None:
        drain_end = after_t0(report, drain.get("end"))
    report_phase = phase(report, "report")
    report_start = after_t0(report, report_phase.get("start"))
    report_length = number(report_phase.get("duration_seconds"))
    segments = [
        *segment(0.0, stop if stop is not None else hold, HOLD, "hold", words.hold_reason(report)),
        *segment(stop, drain_end, DRAIN, "drain"),
        *segment(
            report_start,
            None if report_start is None or report_length is None else report_start + report_length,
            SIDECAR,
            "report",
        ),
    ]
    marks = []
    if stop is not None:
        marks.append(Mark(stop, "stop", f"the app's stop signal at {seconds(stop)}"))
    last_late = number(report.get("last_late_connection_seconds"))
    if last_late is not None:
        marks.append(Mark(last_late, "late", f"last late connection at {seconds(last_late)}"))
    marks += pinned_mark(report, stop)
    if report.get("outcome") == "timeout":
        marks.append(Mark(grace, "sigkill", f"still draining at the deadline: SIGKILL at {seconds(grace)}"))
    found = words.problems(report)
    return Lane(
        name,
        grace,
        segments,
        marks,
        [],
        bool(found),
        ", ".join(found or ["clean"]) + (" (cut short)" if report.get("truncated") else ""),
        words.summary_line(report),
        number(report.get("margin_seconds")),
        note=clock_time(report.get("t0")),
    )


def clock_time(unix_seconds: object) -> str:
    """When a real pod's shutdown began, on the clock (the one absolute time a person needs)."""
    at = number(unix_seconds)
    if at is None:
        return ""
    return "t0 " + datetime.datetime.fromtimestamp(at, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def pod_failures(pod: Document) -> list[tuple[float, str]]:
    failed = pod.get("failed_requests")
    if not isinstance(failed, list):
        return []
    return [(float(row[0]), str(row[1])) for row in failed if isinstance(row, list) and len(row) >= 2]


def simulated_lane(pod: Document) -> Lane:
    """A rehearsed pod's lane, as the kubelet saw it (times after the pod's deletion), with its
    sidecar's report for the hold's reason and the late connections."""
    grace = float(pod["grace_period_seconds"])
    containers: Mapping[str, Document] = pod["containers"]
    app = containers[pod["app_container"]]
    stop, exited = app.get("stop_signal_after_seconds", app.get("sigterm_after_seconds")), app["exited_after_seconds"]
    report = pod.get("report") if isinstance(pod.get("report"), dict) else None
    hook = app.get("pre_stop_hook")
    why = words.hold_reason(report) if report else None
    segments = [*segment(0.0, stop, HOLD, "hold" if hook else "no hold", why), *segment(stop, exited, DRAIN, "drain")]
    sidecar = pod.get("sidecar_container")
    if sidecar is not None and sidecar != pod["app_container"]:
        segments += segment(exited, containers[sidecar]["exited_after_seconds"], SIDECAR, "sidecar")
    marks = []
    if stop is not None:
        marks.append(Mark(stop, "stop", f"{app.get('stop_signal') or 'stop signal'} to the app at {seconds(stop)}"))
    removed = pod.get("endpoint_removed_after_seconds")
    if removed is not None:
        marks.append(Mark(removed, "endpoint", f"the balancer stopped routing to it at {seconds(removed)}"))
    if report is not None and number(report.get("last_late_connection_seconds")) is not None:
        last = float(report["last_late_connection_seconds"])
        marks.append(Mark(last, "late", f"last late connection at {seconds(last)}"))
    marks += pinned_mark(report, stop)
    for name in pod["sigkilled"]:
        at = containers[name]["sigkill_after_seconds"]
        marks.append(Mark(at, "sigkill", f"SIGKILL to {name} at {seconds(at)}"))
    failures = pod_failures(pod)
    status = simulated_status(pod, failures, report)
    return Lane(
        str(pod["name"]),
        grace,
        segments,
        marks,
        failures,
        status != "clean",
        status,
        simulated_line(pod, report),
        None if report is None else number(report.get("margin_seconds")),
        note=simulated_note(pod),
    )


def simulated_status(pod: Document, failures: list[tuple[float, str]], report: Document | None) -> str:
    """The lane's status: 'clean', or what went wrong in a few words (a SIGKILL, an overrun,
    failed requests, what the sidecar's report says)."""
    parts = []
    if pod["sigkilled"]:
        parts.append("SIGKILLed")
    elif not pod["within_grace"]:
        parts.append("overran")
    if failures:
        parts.append(f"{len(failures)} failed")
    if report is not None:
        parts += [f"sidecar: {problem}" for problem in words.problems(report)]
    return ", ".join(parts) or "clean"


def simulated_line(pod: Document, report: Document | None) -> str:
    ended = pod.get("terminated_after_seconds")
    grace = pod["grace_period_seconds"]
    head = f"gone {seconds(ended)} after deletion, of its {grace:g} s grace" if ended is not None else "did not end"
    if report is None:
        return head + ("; no sidecar" if pod.get("sidecar_container") is None else "; no report")
    return f"{head}; sidecar: {words.summary_line(report)}"


def simulated_note(pod: Document) -> str:
    deleted = number(pod.get("deleted_after_seconds"))
    return "" if deleted is None else f"deleted {seconds(deleted)} into the rehearsal"
