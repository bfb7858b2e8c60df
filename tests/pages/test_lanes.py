"""A pod's lane from a sidecar's report and from a rehearsed pod: segments and marks in seconds
after t0, and a status that says what is wrong."""

from __future__ import annotations

from typing import Any

from sidecar.pages.lanes import DRAIN, HOLD, SIDECAR, report_lane, simulated_lane
from sidecar.simulate.verdict import pod_document
from tests.pages.test_words import T0, report
from tests.simulate.pod_records import native_pod, none_pod


def kinds_and_times(segments: list[Any]) -> list[tuple[str, float, float]]:
    return [(s.kind, round(s.start, 2), round(s.end, 2)) for s in segments]


def test_report_lane_draws_hold_drain_and_report_after_t0() -> None:
    lane = report_lane(
        "web-1",
        report(phases={**report()["phases"], "report": {"start": T0 + 6.1, "end": None, "duration_seconds": 0.2}}),
    )
    assert kinds_and_times(lane.segments) == [(HOLD, 0.0, 3.0), (DRAIN, 3.0, 6.1), (SIDECAR, 6.1, 6.3)]
    assert [(m.kind, m.at) for m in lane.marks] == [("stop", 3.0)]
    assert (lane.problem, lane.status, lane.grace_seconds) == (False, "clean", 10.0)


def test_report_lane_of_a_timeout_marks_sigkill_at_the_grace_period_and_pinned_connections() -> None:
    connections = {"at_t0": 9, "at_stop": 7, "at_drain_end": 7, "at_stop_opened_before_t0": 5}
    lane = report_lane("web-2", report(outcome="timeout", drain_end_source="deadline", connections=connections))
    assert ("sigkill", 10.0) in [(m.kind, m.at) for m in lane.marks]
    assert ("pinned", 3.0) in [(m.kind, m.at) for m in lane.marks]
    assert lane.problem
    assert lane.status == "timeout"


def test_simulated_lane_follows_the_kubelet_and_marks_the_balancer_and_sigkill() -> None:
    pod = pod_document(native_pod("pod-k", hook_end=3.0, app_exit=10.5, app_killed=10.0, sidecar_exit=11.0))
    lane = simulated_lane(pod)
    assert kinds_and_times(lane.segments) == [(HOLD, 0.0, 3.0), (DRAIN, 3.0, 10.5), (SIDECAR, 10.5, 11.0)]
    marks = [(m.kind, m.at) for m in lane.marks]
    assert ("endpoint", 2.0) in marks
    assert ("sigkill", 10.0) in marks
    assert lane.status.startswith("SIGKILLed")
    assert lane.problem


def test_simulated_lane_of_a_pod_without_sidecar_says_so_and_counts_its_failures() -> None:
    pod = {
        **pod_document(none_pod("pod-n")),
        "failed_requests": [[0.5, "refused", "drain"], [1.5, "timeout", "exited"]],
    }
    lane = simulated_lane(pod)
    assert lane.failures == [(0.5, "refused"), (1.5, "timeout")]
    assert lane.status == "2 failed"
    assert lane.line.endswith("no sidecar")
