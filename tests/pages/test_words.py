"""The one-line summary of a report: seconds after t0, the drain's end and how it was seen, the
hold and why it ended, late connections split by whether the hold covered them."""

from __future__ import annotations

from typing import Any

import pytest

from sidecar.pages.words import late_words, summary_line

T0 = 1_800_000_000.0


def report(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "outcome": "clean",
        "drain_end_source": "process_exit",
        "grace_period_seconds": 10.0,
        "t0": T0,
        "deadline": T0 + 10,
        "drain_end": T0 + 6.1,
        "margin_seconds": 3.9,
        "phases": {
            "prestop_delay": {"start": T0, "end": T0 + 3.0, "duration_seconds": 3.0},
            "drain": {"start": T0 + 3.0, "end": T0 + 6.1, "duration_seconds": 3.1},
        },
        "late_connections": 0,
        "last_late_connection_seconds": None,
        "connections": {"at_t0": 4, "at_stop": 2, "at_drain_end": 0, "at_stop_opened_before_t0": 0},
        "app": {"inflight": 0, "inflight_at_stop": 2, "inflight_peak": 3, "complete_at": T0 + 6.0, "workers": {}},
        "errors": [],
    }
    return {**base, **changes}


def test_summary_line_says_the_drain_in_seconds_after_the_stop_and_before_sigkill() -> None:
    line = summary_line(report())
    assert line.startswith("clean - app exited 3.1 s after its stop, 3.9 s before SIGKILL")
    assert "(measured by the app's exit)" in line
    assert "app said complete" in line
    assert "0 connections pinned at the stop (of 2 open)" in line
    assert str(int(T0)) not in line  # no Unix time


def test_summary_line_names_why_the_hold_ended_from_the_hold_key() -> None:
    hold = {"mode": "auto", "released_by": "quiet", "duration_seconds": 4.2, "window_seconds": 1.0}
    assert "hold 4.2 s (no new connection for 1.0 s)" in summary_line(report(hold=hold))
    on_requests = {**hold, "evidence": "requests"}
    assert "hold 4.2 s (no new request or connection for 1.0 s)" in summary_line(report(hold=on_requests))
    # --prestop-evidence connections with an app that reports requests: they restarted the window too
    reported = {**hold, "evidence": "connections", "requests_after_t0": 0}
    assert "hold 4.2 s (no new request or connection for 1.0 s)" in summary_line(report(hold=reported))
    maximum = {**hold, "released_by": "maximum", "counting": "no /proc/net/tcp"}
    assert "hit its maximum" in summary_line(report(hold=maximum))
    assert "could not count arrivals: no /proc/net/tcp" in summary_line(report(hold=maximum))
    interrupted = {**hold, "released_by": "interrupted"}
    assert "cut short by the sidecar's SIGTERM or a second Ctrl-C" in summary_line(report(hold=interrupted))
    assert "hold 3.0 s;" in summary_line(report())  # no hold key: the prestop_delay phase


def test_late_words_says_all_covered_when_the_last_came_inside_the_hold() -> None:
    assert late_words(report(late_connections=72, last_late_connection_seconds=2.5)) == (
        "72 late connections, all inside the hold (last 2.5 s after t0)"
    )


def test_late_words_says_not_covered_when_one_came_after_the_hold() -> None:
    words = late_words(report(late_connections=3, last_late_connection_seconds=4.0))
    assert words is not None
    assert "not all covered" in words
    assert "1.0 s after the hold ended" in words


def test_summary_line_of_a_timeout_says_the_app_was_still_running() -> None:
    line = summary_line(report(outcome="timeout", drain_end_source="deadline", drain_end=None, app=None))
    assert line.startswith("timeout")
    assert "app still running at the deadline" in line


def test_summary_line_of_an_unwatched_app_at_the_deadline_does_not_say_it_still_ran() -> None:
    # Nothing watched the app (no process, port, native sidecar or report): unknown, not timeout.
    reason = "nothing watched the app"
    line = summary_line(
        report(outcome="unknown", outcome_reason=reason, drain_end_source="deadline", drain_end=None, app=None)
    )
    assert line.startswith(f"unknown ({reason})")
    assert "still running" not in line
    assert "nothing saw the drain end by the deadline" in line


def test_summary_line_of_a_report_cut_short_says_so_and_keeps_what_it_has() -> None:
    line = summary_line({"outcome": "clean", "margin_seconds": 2.0, "truncated": True})
    assert line == "clean - drain ended 2.0 s before SIGKILL; report cut short: some figures missing"


def test_summary_line_says_a_negative_margin_as_time_past_sigkill() -> None:
    assert "1.5 s after SIGKILL was due" in summary_line(report(margin_seconds=-1.5, outcome="timeout"))


def test_summary_line_gives_the_reason_for_an_outcome_other_than_clean() -> None:
    line = summary_line(report(outcome="unknown", outcome_reason="the listener closed; no exit was seen"))
    assert line.startswith("unknown (the listener closed; no exit was seen) - ")
    assert "(" not in summary_line(report(outcome_reason="the app exited")).split(" - ")[0]


def test_summary_line_names_the_background_tasks_the_app_cancelled_or_left_stuck() -> None:
    tasks = {"finished": ["upload"], "cancelled": ["refresh-cache"], "stuck": ["poll", "sync"], "waited_seconds": 1.0}
    app = {**report()["app"], "tasks": tasks}
    line = summary_line(report(app=app))
    assert "app said complete, cancelled task refresh-cache, stuck tasks poll, sync" in line
    assert "upload" not in line


@pytest.mark.parametrize(
    ("hold", "why"),
    [
        pytest.param(
            {"window_seconds": 1.0, "last_arrival_seconds": 7.5},
            "hit its maximum: 1.0 s of quiet after the last arrival, 7.5 s after t0, ends later",
            id="arrivals-went-on",
        ),
        pytest.param(
            {"window_seconds": 8.0},
            "hit its maximum: the traffic before t0 called for a quiet window as long",
            id="window-as-long-as-the-maximum",
        ),
        pytest.param({"window_seconds": None}, "hit its maximum: no arrival before t0 to judge quiet by", id="no-rate"),
        pytest.param(
            {"window_seconds": None, "counting": "no --app-port: arrivals are not counted"},
            "hit its maximum; could not count arrivals: no --app-port",
            id="nothing-counted",
        ),
    ],
)
def test_summary_line_says_why_an_auto_hold_lasted_its_maximum(hold: dict[str, Any], why: str) -> None:
    # The default hold is auto: the reason must not say arrivals went on when the window was the maximum.
    maximum = {"mode": "auto", "released_by": "maximum", "duration_seconds": 8.0, "maximum_seconds": 8.0, **hold}
    assert f"hold 8.0 s ({why}" in summary_line(report(hold=maximum))
