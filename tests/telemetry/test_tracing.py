from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import StatusCode

from sidecar.deadline import Budget
from sidecar.lifecycle import DrainEndSource, Outcome, Phase, Timeline, Trigger
from sidecar.telemetry.report import ShutdownEvent, build_report
from sidecar.telemetry.tracing import build_spans

WALL_AT_T0 = 1_700_000_000.0
RESOURCE = Resource({"service.name": "shutdown-sidecar", "k8s.pod.name": "web-1"})
EVENTS: list[ShutdownEvent] = [
    ("readiness failing", WALL_AT_T0, {}),
    ("signal", WALL_AT_T0 + 0.001, {"signal": "SIGTERM"}),
    ("stop signal sent", WALL_AT_T0 + 5, {"signal": "SIGTERM"}),
    ("app exit", WALL_AT_T0 + 10, {"status": "0"}),
]


def finished_report(source: DrainEndSource, outcome: Outcome, trigger: Trigger = Trigger.SIGNAL) -> dict[str, Any]:
    """t0 at monotonic 10 (Unix WALL_AT_T0): a 5 s prestop delay, then a drain ended at 20."""
    timeline = Timeline(Budget(30, 5, 1), wall_clock=lambda: WALL_AT_T0)
    timeline.begin(trigger, now=10)
    timeline.advance(Phase.DRAIN, now=15)
    timeline.end_drain(source, outcome, now=20)
    return dict(build_report(timeline, 20.5))


def spans_by_name(spans: Sequence[ReadableSpan]) -> dict[str, ReadableSpan]:
    return {span.name: span for span in spans}


def ns(unix_seconds: float) -> Any:
    return pytest.approx(unix_seconds * 1e9, abs=1_000)


def test_tracing_spans_are_the_root_and_its_two_phases_with_their_times() -> None:
    document = finished_report(DrainEndSource.PROCESS_EXIT, Outcome.CLEAN)
    spans = spans_by_name(build_spans(document, EVENTS, RESOURCE, ended_at=WALL_AT_T0 + 10.5))
    assert set(spans) == {"shutdown", "shutdown.prestop_delay", "shutdown.drain"}
    root = spans["shutdown"]
    assert root.parent is None
    for child in ("shutdown.prestop_delay", "shutdown.drain"):
        parent = spans[child].parent
        assert parent is not None
        assert parent.span_id == root.context.span_id
        assert spans[child].context.trace_id == root.context.trace_id
    assert (root.start_time, root.end_time) == (ns(WALL_AT_T0), ns(WALL_AT_T0 + 10.5))
    delay, drain = spans["shutdown.prestop_delay"], spans["shutdown.drain"]
    assert (delay.start_time, delay.end_time) == (ns(WALL_AT_T0), ns(WALL_AT_T0 + 5))
    assert (drain.start_time, drain.end_time) == (ns(WALL_AT_T0 + 5), ns(WALL_AT_T0 + 10))
    assert root.resource.attributes["k8s.pod.name"] == "web-1"


def test_tracing_root_has_the_spec_attributes_and_the_report() -> None:
    document = finished_report(DrainEndSource.PROCESS_EXIT, Outcome.CLEAN, Trigger.PRESTOP)
    root = spans_by_name(build_spans(document, EVENTS, RESOURCE, ended_at=WALL_AT_T0 + 10.5))["shutdown"]
    attributes = dict(root.attributes or {})
    assert {key: attributes[key] for key in attributes if key != "shutdown.report"} == {
        "shutdown.trigger": "prestop",
        "shutdown.grace_period_s": 30.0,
        "shutdown.prestop_delay_s": 5.0,
        "shutdown.outcome": "clean",
        "shutdown.margin_s": 20.0,
        "shutdown.drain_end_source": "process_exit",
    }
    assert json.loads(str(attributes["shutdown.report"])) == document


def test_tracing_root_has_no_margin_when_nothing_measured_the_drain_end() -> None:
    document = finished_report(DrainEndSource.DEADLINE, Outcome.UNKNOWN)
    root = spans_by_name(build_spans(document, [], RESOURCE, ended_at=WALL_AT_T0 + 30))["shutdown"]
    attributes = root.attributes or {}
    assert "shutdown.margin_s" not in attributes
    assert attributes["shutdown.drain_end_source"] == "deadline"


def test_tracing_events_are_on_the_root_span() -> None:
    document = finished_report(DrainEndSource.PROCESS_EXIT, Outcome.CLEAN)
    spans = spans_by_name(build_spans(document, EVENTS, RESOURCE, ended_at=WALL_AT_T0 + 10.5))
    root = spans["shutdown"]
    assert [(event.name, dict(event.attributes or {})) for event in root.events] == [
        (name, dict(attributes)) for name, _, attributes in EVENTS
    ]
    assert [event.timestamp for event in root.events] == [ns(at) for _, at, _ in EVENTS]
    assert not spans["shutdown.drain"].events
    assert not spans["shutdown.prestop_delay"].events


@pytest.mark.parametrize(
    ("source", "outcome", "status"),
    [
        pytest.param(DrainEndSource.PROCESS_EXIT, Outcome.CLEAN, StatusCode.UNSET, id="clean"),
        pytest.param(DrainEndSource.DEADLINE, Outcome.TIMEOUT, StatusCode.ERROR, id="timeout"),
        pytest.param(DrainEndSource.DEADLINE, Outcome.UNKNOWN, StatusCode.ERROR, id="unknown"),
        pytest.param(DrainEndSource.PROCESS_EXIT, Outcome.APP_EXIT, StatusCode.ERROR, id="app-exit"),
    ],
)
def test_tracing_root_status_is_error_unless_the_outcome_is_clean(
    source: DrainEndSource, outcome: Outcome, status: StatusCode
) -> None:
    document = finished_report(source, outcome)
    root = spans_by_name(build_spans(document, [], RESOURCE, ended_at=WALL_AT_T0 + 30))["shutdown"]
    assert root.status.status_code is status
    if status is StatusCode.ERROR:
        assert root.status.description == f"outcome {outcome.value}"


def test_tracing_app_exit_has_no_drain_span() -> None:
    document = finished_report(DrainEndSource.PROCESS_EXIT, Outcome.APP_EXIT)
    spans = spans_by_name(build_spans(document, [], RESOURCE, ended_at=WALL_AT_T0 + 30))
    assert set(spans) == {"shutdown", "shutdown.prestop_delay"}
    assert "shutdown.margin_s" not in (spans["shutdown"].attributes or {})


def test_tracing_root_status_says_why_the_outcome_is_not_clean() -> None:
    document = {**finished_report(DrainEndSource.CONNECTIONS, Outcome.UNKNOWN), "outcome_reason": "nothing saw it"}
    root = spans_by_name(build_spans(document, [], RESOURCE, ended_at=WALL_AT_T0 + 30))["shutdown"]
    assert root.status.description == "outcome unknown: nothing saw it"
