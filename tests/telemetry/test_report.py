from __future__ import annotations

from sidecar.deadline import Budget
from sidecar.lifecycle import DrainEndSource, Outcome, Phase, Timeline, Trigger
from sidecar.telemetry.report import (
    MAX_TASKS_IN_REPORT,
    AppActivity,
    ConnectionCounts,
    Observations,
    TaskOutcome,
    WorkerActivity,
    build_report,
)

REQUIRED_KEYS = {
    "outcome", "trigger", "drain_end_source", "grace_period_seconds", "prestop_delay_seconds", "margin_seconds",
    "t0", "deadline", "phases", "late_connections", "last_late_connection_seconds", "errors",
}  # fmt: skip


def finished_timeline() -> Timeline:
    timeline = Timeline(Budget(30, 5, 1), wall_clock=lambda: 1_700_000_000.0)
    timeline.begin(Trigger.PRESTOP, now=10)
    timeline.advance(Phase.DRAIN, now=15)
    timeline.end_drain(DrainEndSource.APP_REPORT, Outcome.CLEAN, now=20, reason="the app reported complete")
    return timeline


def test_report_document_has_the_contract_keys_in_unix_seconds() -> None:
    document = build_report(finished_timeline(), 20.5)
    assert set(document) >= REQUIRED_KEYS
    assert document["t0"] == 1_700_000_000.0
    assert document["deadline"] == 1_700_000_030.0
    assert document["margin_seconds"] == 20
    assert document["outcome_reason"] == "the app reported complete"
    assert document["phases"]["drain"] == {"start": 1_700_000_005.0, "end": 1_700_000_010.0, "duration_seconds": 5}
    assert document["phases"]["report"]["end"] is None


def test_report_app_exit_has_a_drain_phase_without_times_and_no_drain_end_or_margin() -> None:
    timeline = Timeline(Budget(30, 5, 1), wall_clock=lambda: 1_700_000_000.0)
    timeline.begin(Trigger.SIGNAL, now=10)
    timeline.advance(Phase.DRAIN, now=15)
    timeline.end_drain(DrainEndSource.PROCESS_EXIT, Outcome.APP_EXIT, now=15, reason="it exited during the hold")
    document = build_report(timeline, 15.1, drain_end_observed={DrainEndSource.PROCESS_EXIT: 12.0})
    assert document["phases"]["drain"] == {"start": None, "end": None, "duration_seconds": None}
    assert document["phases"]["prestop_delay"]["duration_seconds"] == 5
    assert (document["outcome"], document["drain_end"], document["margin_seconds"]) == ("app_exit", None, None)
    assert document.get("drain_end_observed") == {"process_exit": 2.0}


def test_report_connections_are_null_unless_the_app_port_is_watched() -> None:
    assert build_report(finished_timeline(), 21)["connections"] is None
    counts = ConnectionCounts(at_t0=4, at_stop=3, at_drain_end=0, at_stop_opened_before_t0=2)
    document = build_report(finished_timeline(), 21, Observations(connections=counts))
    assert document["connections"] == {"at_t0": 4, "at_stop": 3, "at_drain_end": 0, "at_stop_opened_before_t0": 2}


def test_report_stop_signal_and_app_exit_status_only_in_run_mode() -> None:
    assert "stop_signal" not in build_report(finished_timeline(), 21)
    run_mode = Observations(has_app_process=True, stop_signal="SIGINT", app_exit_status=0)
    document = build_report(finished_timeline(), 21, run_mode)
    assert (document["stop_signal"], document["app_exit_status"]) == ("SIGINT", 0)


def test_report_app_is_null_until_the_app_reports_then_sums_its_named_workers() -> None:
    assert build_report(finished_timeline(), 21)["app"] is None
    workers = {"7": WorkerActivity(inflight=0, complete=True, complete_at=1_700_000_009.5), "8": WorkerActivity(2)}
    activity = AppActivity(workers=workers, inflight_at_stop=5, inflight_peak=6, complete_at=None)
    app = build_report(finished_timeline(), 21, Observations(app=activity))["app"]
    assert app == {
        "inflight": 2,
        "inflight_at_stop": 5,
        "inflight_peak": 6,
        "complete_at": None,
        "workers": {
            "7": {"inflight": 0, "complete": True, "exited": False, "complete_at": 1_700_000_009.5},
            "8": {"inflight": 2, "complete": False, "exited": False, "complete_at": None},
        },
        "tasks": None,  # no worker reported its background tasks
    }
    single = build_report(finished_timeline(), 21, Observations(app=AppActivity(workers={"": WorkerActivity(3)})))
    assert single["app"] is not None
    assert single["app"]["workers"] == {}  # a report that names no worker is not listed as one


def test_report_app_tasks_merge_the_workers_names_capped_and_take_the_longest_wait() -> None:
    many = tuple(f"loop-{n:02}" for n in range(MAX_TASKS_IN_REPORT + 3))
    workers = {
        "7": WorkerActivity(complete=True, tasks=TaskOutcome(("flush",), ("refresh",), (), 1.0)),
        "8": WorkerActivity(complete=True, tasks=TaskOutcome(("flush",), ("refresh", *many), ("stubborn",), 2.5)),
        "9": WorkerActivity(complete=True),  # said nothing of its tasks
    }
    app = build_report(finished_timeline(), 21, Observations(app=AppActivity(workers=workers)))["app"]
    assert app is not None
    assert app["tasks"] == {
        "finished": ["flush"],
        "cancelled": list(many[:MAX_TASKS_IN_REPORT]),  # sorted, each once, at most MAX_TASKS_IN_REPORT
        "stuck": ["stubborn"],
        "waited_seconds": 2.5,
    }
