from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from sidecar.drain.app_report import AppReport, DrainReport, DrainReportError, parse_drain_report
from sidecar.telemetry.metrics import ShutdownMetrics


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"[]", id="array"),
        pytest.param(b"{}", id="empty-object"),
        pytest.param(b'{"inflight": 1.5}', id="fraction"),
        pytest.param(b'{"inflight": true}', id="bool"),
        pytest.param(b'{"inflight": -1}', id="negative"),
        pytest.param(b'{"inflight": 1, "extra": 2}', id="unknown-key"),
        pytest.param(b'{"event": "done"}', id="unknown-event"),
        pytest.param(b"\xff\xfe", id="not-utf8"),
    ],
)
def test_app_report_rejects_bad_bodies(body: bytes) -> None:
    with pytest.raises(DrainReportError):
        parse_drain_report(body)


def test_app_report_accepts_inflight_and_complete() -> None:
    assert parse_drain_report(b'{"inflight": 0, "event": "complete"}') == DrainReport(0, complete=True)
    assert parse_drain_report(b'{"inflight": 7}') == DrainReport(7, complete=False)
    assert parse_drain_report(b'{"event": "complete"}') == DrainReport(None, complete=True)


def test_app_report_sets_the_inflight_gauge_and_reports_completion_once() -> None:
    metrics = ShutdownMetrics(CollectorRegistry(), version="test", grace_period_seconds=30)
    ends: list[str] = []

    def report_end() -> bool:
        ends.append("end")
        return len(ends) == 1  # the sequence accepts the first end only

    app_report = AppReport(metrics=metrics, report_end=report_end)
    assert not app_report.apply(DrainReport(3, complete=False))
    assert metrics.registry.get_sample_value("sidecar_app_inflight") == 3
    assert ends == []
    assert app_report.apply(DrainReport(0, complete=True))
    assert not app_report.apply(DrainReport(None, complete=True))
    assert metrics.registry.get_sample_value("sidecar_app_inflight") == 0
    assert ends == ["end", "end"]
