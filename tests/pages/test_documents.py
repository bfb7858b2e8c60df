"""Reading reports in every shape an operator has them in; refusing what is none of them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sidecar.pages.documents import SHAPES, ShapeError, read_reports, repair_truncated
from sidecar.telemetry.delivery import TERMINATION_LOG_MAX_BYTES, termination_log_text

FIXTURES = Path(__file__).parent / "fixtures"


def kubectl_pods() -> dict[str, Any]:
    document: dict[str, Any] = json.loads((FIXTURES / "pods.json").read_text())
    return document


def a_report(**changes: Any) -> dict[str, Any]:
    report = kubectl_pods()["items"][0]["status"]["initContainerStatuses"][0]["state"]["terminated"]["message"]
    return {**json.loads(report), **changes}


def test_read_reports_takes_each_pod_of_a_kubectl_list_native_and_classic() -> None:
    reports = read_reports((FIXTURES / "pods.json").read_text())
    assert reports.shape == "kubectl get pods -o json"
    assert [pod.name for pod in reports.pods] == ["web-7d9c-a1", "web-7d9c-b2", "web-7d9c-c3"]
    assert [pod.report["outcome"] for pod in reports.pods] == ["clean", "timeout", "clean"]
    assert reports.without_report == ["web-7d9c-d4"]  # still running: nothing terminated yet
    assert [pod.truncated for pod in reports.pods] == [False, False, True]


def test_read_reports_names_pods_with_their_namespace_when_a_list_spans_several() -> None:
    pods = kubectl_pods()
    pods["items"][1]["metadata"]["namespace"] = "other"
    names = [pod.name for pod in read_reports(json.dumps(pods)).pods]
    assert names[:2] == ["shop/web-7d9c-a1", "other/web-7d9c-b2"]


def test_read_reports_takes_one_pod() -> None:
    reports = read_reports(json.dumps(kubectl_pods()["items"][1]))
    assert [pod.name for pod in reports.pods] == ["web-7d9c-b2"]


@pytest.mark.parametrize(
    ("text", "shape"),
    [
        pytest.param(json.dumps(a_report()), "final report", id="termination-log"),
        pytest.param(json.dumps(a_report(phase="drain", outcome=None)), "/status document", id="status"),
        pytest.param(
            json.dumps({"ts": 1.0, "level": "info", "msg": "shutdown report", "report": a_report()}),
            "log line",
            id="json-log-line",
        ),
    ],
)
def test_read_reports_takes_each_single_report_shape(text: str, shape: str) -> None:
    reports = read_reports(text)
    assert reports.shape == shape
    assert len(reports.pods) == 1


def test_read_reports_finds_the_report_lines_among_other_log_lines_json_and_text() -> None:
    report = json.dumps(a_report(), separators=(",", ":"))
    log = "\n".join(
        [
            json.dumps({"ts": 1.0, "msg": "phase changed", "from": "running", "to": "prestop_delay"}),
            json.dumps({"ts": 2.0, "msg": "shutdown report", "report": a_report(outcome="timeout")}),
            "18:00:01.000 info    phase changed from=drain to=report",
            f"18:00:01.100 info    shutdown report report={report}",
        ]
    )
    reports = read_reports(log)
    assert [pod.report["outcome"] for pod in reports.pods] == ["timeout", "clean"]


def test_read_reports_ignores_keys_it_does_not_know() -> None:
    reports = read_reports(json.dumps(a_report(from_the_future={"x": [1]}, outcome="clean")))
    assert reports.pods[0].report["outcome"] == "clean"


def test_read_reports_reads_a_report_cut_mid_way_as_far_as_it_goes() -> None:
    # The termination log's last resort is its first 4096 bytes; a pasted report may be cut too.
    cut = json.dumps(a_report(), separators=(",", ":"))[:700]
    [pod] = read_reports(cut).pods
    assert pod.truncated
    assert pod.report["outcome"] == "clean"


def test_read_reports_takes_each_shortened_report_the_termination_log_writes() -> None:
    many = a_report(errors=[f"error {n}: " + "x" * 300 for n in range(40)])
    text = termination_log_text(many)
    assert len(text.encode()) <= TERMINATION_LOG_MAX_BYTES
    [pod] = read_reports(text).pods
    assert pod.truncated
    assert pod.report["outcome"] == "clean"


def test_repair_truncated_keeps_complete_values_and_drops_a_dangling_key() -> None:
    assert repair_truncated('{"a":1,"b":{"c":[1,2],"d":"x') == {"a": 1, "b": {"c": [1, 2]}, "truncated": True}
    assert repair_truncated('{"a":"with \\" quote","b') == {"a": 'with " quote', "truncated": True}
    assert repair_truncated("not json") is None


@pytest.mark.parametrize(
    "text",
    [
        pytest.param('{"apiVersion": "v1", "kind": "Service"}', id="other-object"),
        pytest.param("[1, 2]", id="array"),
        pytest.param("hello", id="text"),
        pytest.param("", id="empty"),
        pytest.param('{"kind": "List", "items": []}', id="empty-list"),
    ],
)
def test_read_reports_refuses_a_document_of_no_known_shape_naming_the_shapes(text: str) -> None:
    with pytest.raises(ShapeError) as refused:
        read_reports(text)
    message = str(refused.value)
    assert "\n" not in message
    assert all(shape in message for shape in SHAPES)
