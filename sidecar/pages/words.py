"""A final report in words a person reads in one glance: one line per pod, every time in seconds
after t0, the late connections split into those the hold covered and those it did not. Pure
functions of the report document; a key that is missing (an older sidecar, a report cut short)
leaves its words out rather than failing."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from sidecar.hold_rule import too_little_history_reason

Document = Mapping[str, Any]

# How the drain's end was seen, as a person would say it.
MEASURED_BY: Final = {
    "process_exit": "measured by the app's exit",
    "sidecar_sigterm": "measured by the sidecar's SIGTERM, which follows the app's exit",
    "connections": "measured by the app's listener and connections closing",
    "app_report": "as the app reported on POST /drain",
    "deadline": "nothing saw it end",
    "interrupted": "cut short by a second SIGINT",
}
ENDED: Final = {
    "process_exit": "app exited",
    "sidecar_sigterm": "app exited",
    "connections": "app's connections closed",
    "app_report": "app said it was done",
}


def seconds(value: float) -> str:
    """A duration for reading: one decimal, two under a second (0.16 s is not 0.2 s)."""
    return f"{value:.2f} s" if abs(value) < 1 else f"{value:.1f} s"


def number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def after_t0(report: Document, unix_seconds: object) -> float | None:
    """A Unix time of the report as seconds after its t0."""
    t0, at = number(report.get("t0")), number(unix_seconds)
    return None if t0 is None or at is None else at - t0


def phase(report: Document, name: str) -> Mapping[str, Any]:
    phases = report.get("phases")
    found = phases.get(name) if isinstance(phases, dict) else None
    return found if isinstance(found, dict) else {}


def stop_after_t0(report: Document) -> float | None:
    """When the app was told to stop: the drain's start (the hold's end)."""
    return after_t0(report, phase(report, "drain").get("start"))


def hold_seconds(report: Document) -> float | None:
    hold = report.get("hold")
    if isinstance(hold, dict) and number(hold.get("duration_seconds")) is not None:
        return number(hold["duration_seconds"])
    duration = number(phase(report, "prestop_delay").get("duration_seconds"))
    return duration if duration is not None else stop_after_t0(report)


def hold_words(report: Document) -> str | None:
    """How long the hold lasted and why it ended: the `hold` key when the sidecar wrote one, else
    the prestop_delay phase (a fixed delay)."""
    duration = hold_seconds(report)
    if duration is None:
        return None
    why = hold_reason(report)
    return f"hold {seconds(duration)}" + (f" ({why})" if why else "")


def maximum_reason(hold: Document) -> str:
    """Why an auto hold lasted its maximum: its traffic before t0 called for a quiet window as long
    (a pooled client's few new connections, a few requests a second), or the window after the last
    arrival since t0 ends later, or there was nothing before t0 to judge quiet by, or counting
    before t0 ran for less than the maximum (a pod started shortly before t0)."""
    window, maximum = number(hold.get("window_seconds")), number(hold.get("maximum_seconds"))
    if window is None:
        counted = hold.get("counting") in (None, "ok")
        span = number(hold.get("counted_seconds"))
        if counted and number(hold.get("rate_per_second")) and span is not None and maximum and span < maximum:
            return f"hit its maximum: {too_little_history_reason(seconds(span))}"
        return "hit its maximum" + (": no arrival before t0 to judge quiet by" if counted else "")
    if maximum is not None and window >= maximum:
        return "hit its maximum: the traffic before t0 called for a quiet window as long"
    last = number(hold.get("last_arrival_seconds"))
    if last is not None:
        return (
            f"hit its maximum: {seconds(window)} of quiet after the last arrival, {seconds(last)} after t0, ends later"
        )
    return "hit its maximum: arrivals had not stopped"


def hold_reason(report: Document) -> str | None:
    """Why the hold ended, from the `hold` key (None without one)."""
    hold = report.get("hold")
    if not isinstance(hold, dict):
        return None
    released = hold.get("released_by")
    reports_requests = hold.get("evidence") == "requests" or hold.get("requests_after_t0") is not None
    why = {
        "fixed": "fixed delay",
        # Reported requests restart the quiet window in either evidence mode.
        "quiet": ("no new request or connection" if reports_requests else "no new connection")
        + (f" for {seconds(hold['window_seconds'])}" if number(hold.get("window_seconds")) else ""),
        "maximum": maximum_reason(hold),
        "interrupted": "cut short by the sidecar's SIGTERM or a second Ctrl-C",
    }.get(str(released), str(released))
    counting = hold.get("counting")
    if counting not in (None, "ok"):
        why += f"; could not count arrivals: {counting}"
    return why


def drain_words(report: Document) -> str | None:
    """When the drain ended, after the stop and before (or after) SIGKILL, and how that was seen."""
    source = str(report.get("drain_end_source"))
    margin = number(report.get("margin_seconds"))
    drain_end, stop = after_t0(report, report.get("drain_end")), stop_after_t0(report)
    if source == "deadline":
        # timeout: a source watched the app and saw no end; unknown: nothing watched it at all.
        if report.get("outcome") == "timeout":
            return "app still running at the deadline (nothing saw it end)"
        return "nothing saw the drain end by the deadline"
    parts = []
    if drain_end is not None and stop is not None:
        parts.append(f"{ENDED.get(source, 'drain ended')} {seconds(drain_end - stop)} after its stop")
    elif drain_end is not None:
        parts.append(f"{ENDED.get(source, 'drain ended')} {seconds(drain_end)} after t0")
    if margin is not None:
        parts.append(
            f"{seconds(margin)} before SIGKILL" if margin >= 0 else f"{seconds(-margin)} after SIGKILL was due"
        )
    if not parts:
        return None
    if len(parts) == 1 and margin is not None:
        parts[0] = f"drain ended {parts[0]}"
    how = MEASURED_BY.get(source)
    return ", ".join(parts) + (f" ({how})" if how else "")


def app_words(report: Document) -> str | None:
    """What the app said on POST /drain: complete, or its requests in flight at the stop; and
    the background tasks its lifespan helper cancelled or found stuck."""
    app = report.get("app")
    if not isinstance(app, dict):
        return None
    inflight = app.get("inflight_at_stop")
    if app.get("complete_at") is not None:
        words = "app said complete"
    elif inflight is not None:
        words = f"app had {inflight} requests in flight at the stop"
    else:
        return None
    tasks = app.get("tasks")
    if isinstance(tasks, dict):
        for outcome in ("cancelled", "stuck"):
            names = tasks.get(outcome)
            if isinstance(names, list) and names:
                words += f", {outcome} task{'s' if len(names) != 1 else ''} {', '.join(map(str, names))}"
    return words


def connections_words(report: Document) -> str | None:
    connections = report.get("connections")
    if not isinstance(connections, dict):
        return None
    pinned = connections.get("at_stop_opened_before_t0")
    at_stop = connections.get("at_stop")
    if pinned is None and at_stop is None:
        return None
    if pinned is None:
        return f"{at_stop} connections open at the stop"
    return f"{pinned} connections pinned at the stop" + (f" (of {at_stop} open)" if at_stop else "")


def late_words(report: Document) -> str | None:
    """New connections after t0, split by whether the hold covered them: covered ones are the
    hold doing its job; one after the hold's end is traffic that reached a stopping app."""
    late = report.get("late_connections")
    if not isinstance(late, int) or late == 0:
        return None if late is None else "no late connection"
    last = number(report.get("last_late_connection_seconds"))
    hold = hold_seconds(report)
    plural = "s" if late != 1 else ""
    if last is None or hold is None:
        return f"{late} late connection{plural}"
    if last <= hold:
        return f"{late} late connection{plural}, all inside the hold (last {seconds(last)} after t0)"
    return (
        f"{late} late connection{plural}, not all covered: the last came {seconds(last)} after t0, "
        f"{seconds(last - hold)} after the hold ended"
    )


def problems(report: Document) -> list[str]:
    """What a person should look at, in a few words each: an outcome other than clean, a late
    connection after the hold, errors while reporting. Empty for a clean shutdown."""
    found = []
    outcome = report.get("outcome")
    if outcome != "clean":
        found.append(str(outcome or "no outcome"))
    late = report.get("late_connections")
    last, hold = number(report.get("last_late_connection_seconds")), hold_seconds(report)
    if isinstance(late, int) and late > 0 and last is not None and hold is not None and last > hold:
        found.append("late connections after the hold")
    if report.get("errors"):
        found.append("reporting errors")
    return found


def summary_line(report: Document) -> str:
    """The pod's shutdown in one line: outcome first, then the drain and its margin before SIGKILL,
    the hold, what was still open at the stop, and the late connections."""
    head = f"{report.get('outcome') or 'no outcome'}"
    reason = report.get("outcome_reason")
    if isinstance(reason, str) and reason and report.get("outcome") != "clean":
        head += f" ({reason})"
    words = [drain_words(report), hold_words(report), app_words(report), connections_words(report), late_words(report)]
    errors = report.get("errors")
    if isinstance(errors, list) and errors:
        words.append(f"{len(errors)} reporting error{'s' if len(errors) != 1 else ''}: {errors[0]}")
    if report.get("truncated"):
        words.append("report cut short: some figures missing")
    return head + " - " + "; ".join(word for word in words if word)
