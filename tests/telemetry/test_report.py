from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from sidecar.deadline import Budget
from sidecar.lifecycle import DrainEndSource, Outcome, Phase, Timeline, Trigger
from sidecar.telemetry.offload import run_in_thread
from sidecar.telemetry.report import (
    TERMINATION_LOG_MAX_BYTES,
    AppActivity,
    ConnectionCounts,
    Observations,
    WorkerActivity,
    build_report,
    deliver_report,
    termination_log_text,
)

REQUIRED_KEYS = {
    "outcome", "trigger", "drain_end_source", "grace_period_seconds", "prestop_delay_seconds", "margin_seconds",
    "t0", "deadline", "phases", "late_connections", "last_late_connection_seconds", "errors",
}  # fmt: skip


def finished_timeline() -> Timeline:
    timeline = Timeline(Budget(30, 5, 1), wall_clock=lambda: 1_700_000_000.0)
    timeline.begin(Trigger.PRESTOP, now=10)
    timeline.advance(Phase.DRAIN, now=15)
    timeline.end_drain(DrainEndSource.APP_REPORT, Outcome.CLEAN, now=20)
    return timeline


def test_report_document_has_the_contract_keys_in_unix_seconds() -> None:
    document = build_report(finished_timeline(), 20.5)
    assert set(document) >= REQUIRED_KEYS
    assert document["t0"] == 1_700_000_000.0
    assert document["deadline"] == 1_700_000_030.0
    assert document["margin_seconds"] == 20
    assert document["phases"]["drain"] == {"start": 1_700_000_005.0, "end": 1_700_000_010.0, "duration_seconds": 5}
    assert document["phases"]["report"]["end"] is None


def test_report_termination_log_text_fits_4096_bytes_and_keeps_the_outcome() -> None:
    document = build_report(finished_timeline(), 21, Observations(errors=["é" * 3000 for _ in range(20)]))
    text = termination_log_text(document)
    assert len(text.encode()) <= TERMINATION_LOG_MAX_BYTES
    parsed = json.loads(text)
    assert parsed["outcome"] == "clean"
    assert parsed["truncated"] is True


def test_report_small_document_is_written_whole() -> None:
    document = build_report(finished_timeline(), 21)
    assert json.loads(termination_log_text(document)) == document


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
    }
    single = build_report(finished_timeline(), 21, Observations(app=AppActivity(workers={"": WorkerActivity(3)})))
    assert single["app"] is not None
    assert single["app"]["workers"] == {}  # a report that names no worker is not listed as one


def test_report_termination_log_drops_the_workers_first_when_too_long() -> None:
    workers = {f"worker-{n:03}": WorkerActivity(n) for n in range(256)}
    document = build_report(finished_timeline(), 21, Observations(app=AppActivity(workers=workers)))
    parsed = json.loads(termination_log_text(document))
    assert parsed["truncated"] is True
    assert parsed["app"]["workers"] == {}
    assert parsed["app"]["inflight"] == sum(range(256))
    assert "drain" in parsed["phases"]


@pytest.mark.anyio
async def test_report_a_hanging_sink_is_named_and_does_not_hold_the_rest(tmp_path: Path) -> None:
    release = threading.Event()
    path = tmp_path / "termination-log"
    document = build_report(finished_timeline(), 21)
    deadline = time.monotonic() + 0.5
    try:
        errors = await deliver_report(
            document,
            sinks={"stuck": lambda _: release.wait(30) and None, "broken": lambda _: 1 / 0},
            termination_log=str(path),
            deadline=deadline,
        )
        assert time.monotonic() < deadline
    finally:
        release.set()
    assert sorted(errors) == ["broken: ZeroDivisionError: division by zero", "stuck: gave up at the deadline"]
    assert json.loads(path.read_text())["errors"] == errors


@pytest.mark.anyio
async def test_offload_returns_the_result_or_raises_the_error() -> None:
    deadline = time.monotonic() + 5
    assert await run_in_thread(lambda: 42, deadline=deadline, name="t") == 42
    with pytest.raises(KeyError):
        await run_in_thread(lambda: {}["missing"], deadline=deadline, name="t")
