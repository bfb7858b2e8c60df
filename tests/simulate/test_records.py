"""The kubelet's records: a new pod's record from its template, and the phase a request to the pod
meets as its termination goes on."""

from __future__ import annotations

import pytest

from sidecar.deadline import Budget
from sidecar.simulate.podspec import Mode, template_for_mode
from sidecar.simulate.records import PodRecord, RequestPhase

BUDGET = Budget(10.0, 3.0, 1.0)


@pytest.mark.parametrize(
    ("mode", "containers", "report_container"),
    [
        pytest.param(Mode.NATIVE, ["shutdown-sidecar", "app"], "shutdown-sidecar", id="native"),
        pytest.param(Mode.CLASSIC, ["app", "shutdown-sidecar"], "shutdown-sidecar", id="classic"),
        pytest.param(Mode.RUN, ["app"], "app", id="run"),
        pytest.param(Mode.NONE, ["app"], None, id="none"),
    ],
)
def test_pod_record_of_template_has_a_record_per_container(
    mode: Mode, containers: list[str], report_container: str | None
) -> None:
    record = PodRecord.of_template("old-1", template_for_mode(mode, BUDGET, ["app"]), 18080, created_at=1.5)
    assert list(record.containers) == containers
    assert (record.traffic_container, record.report_container) == ("app", report_container)
    assert (record.app_port, record.grace_period_seconds, record.created_at) == (18080, 10.0, 1.5)
    assert all(c.started_at is None for c in record.containers.values())
    assert record.deleted_at is None
    assert record.crashes == []


def test_pod_record_request_phase_follows_the_termination() -> None:
    record = PodRecord.of_template("old-1", template_for_mode(Mode.NATIVE, BUDGET, ["app"]), 18080, created_at=0.0)
    app = record.containers["app"]
    assert record.request_phase() is RequestPhase.RUNNING
    record.deleted_at = 5.0
    assert record.request_phase() is RequestPhase.PRESTOP
    app.signalled_at = 8.0
    assert record.request_phase() is RequestPhase.DRAIN
    app.exited_at = 8.5
    assert record.request_phase() is RequestPhase.EXITED
