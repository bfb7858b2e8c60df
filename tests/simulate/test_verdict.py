"""The verdict on a rehearsal, from hand-made kubelet records: each pod's document (times since
its deletion, grace kept or not, the sidecar's report), the reasons to fail, pass or fail."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sidecar.simulate.client import Failure, Result
from sidecar.simulate.load import Tally
from sidecar.simulate.podspec import Mode
from sidecar.simulate.records import PodRecord
from sidecar.simulate.verdict import parse_report, pod_document, reasons_to_fail, result_document
from tests.simulate.pod_records import (
    APP,
    CLEAN_REPORT,
    DELETED_AT,
    SIDECAR,
    container,
    native_pod,
    none_pod,
    pod,
    run_pod,
    tally,
)


def test_pod_document_gives_times_in_seconds_after_the_deletion() -> None:
    document = pod_document(native_pod("pod-7", hook_end=3.0, app_exit=4.5, sidecar_exit=5.0, endpoint_removed=2.0))
    assert document["name"] == "pod-7"
    assert document["grace_period_seconds"] == 10.0
    assert document["endpoint_removed_after_seconds"] == 2.0
    assert document["terminated_after_seconds"] == 5.0
    assert (document["app_container"], document["sidecar_container"]) == (APP, SIDECAR)
    assert document["containers"][APP] == {
        "pre_stop_hook": {"result": "200", "failed": False, "returned_after_seconds": 3.0},
        "stop_signal": None,
        "stop_signal_after_seconds": 3.0,
        "sigterm_after_seconds": 3.0,
        "exited_after_seconds": 4.5,
        "exit_status": 0,
        "sigkill_after_seconds": None,
    }
    assert document["containers"][SIDECAR] == {
        "pre_stop_hook": None,
        "stop_signal": None,
        "stop_signal_after_seconds": 4.5,
        "sigterm_after_seconds": 4.5,
        "exited_after_seconds": 5.0,
        "exit_status": 0,
        "sigkill_after_seconds": None,
    }


def test_pod_document_rounds_times_to_milliseconds() -> None:
    document = pod_document(native_pod(hook_end=3.0004, app_exit=4.12345, sidecar_exit=5.0))
    assert document["containers"][APP]["sigterm_after_seconds"] == 3.0
    assert document["containers"][APP]["exited_after_seconds"] == 4.123


def test_pod_document_of_a_pod_the_balancer_never_dropped_has_no_removal_time() -> None:
    assert pod_document(native_pod(endpoint_removed=None))["endpoint_removed_after_seconds"] is None


@pytest.mark.parametrize(
    ("record", "within_grace", "sigkilled"),
    [
        pytest.param(native_pod(sidecar_exit=5.0), True, [], id="clean"),
        pytest.param(native_pod(app_exit=9.0, sidecar_exit=10.0), True, [], id="exactly-at-the-grace-period"),
        pytest.param(native_pod(app_exit=10.01, app_killed=10.0, sidecar_exit=10.5), False, [APP], id="app-sigkilled"),
        pytest.param(
            native_pod(hook_end=9.5, app_exit=10.8, sidecar_exit=11.0),
            False,
            [],
            id="ended-in-the-2s-after-a-late-sigterm",
        ),
        pytest.param(none_pod(app_exit=10.01, killed=10.0), False, [APP], id="none-mode-sigkilled"),
        pytest.param(pod("pod-1", [container(APP, sigterm=0.0)], reporter=None), False, [], id="never-terminated"),
    ],
)
def test_pod_document_within_grace_only_when_it_ended_in_time_without_sigkill(
    record: PodRecord, within_grace: bool, sigkilled: list[str]
) -> None:
    document = pod_document(record)
    assert document["within_grace"] is within_grace
    assert document["sigkilled"] == sigkilled


def test_pod_document_lists_every_sigkilled_container_sorted() -> None:
    record = pod(
        "pod-1",
        [
            container(SIDECAR, sigterm=6.0, exited=10.01, killed=10.0),
            container(APP, hook=(0.0, 3.0), sigterm=3.0, exited=10.01, killed=10.0),
        ],
    )
    document = pod_document(record)
    assert document["sigkilled"] == [APP, SIDECAR]
    assert document["containers"][SIDECAR]["sigkill_after_seconds"] == 10.0


def test_pod_document_parses_the_sidecars_json_termination_message() -> None:
    report = pod_document(native_pod(report=CLEAN_REPORT))["report"]
    assert report == json.loads(CLEAN_REPORT)


@pytest.mark.parametrize(
    ("message", "report"),
    [
        pytest.param("shutdown report: disk full", "shutdown report: disk full", id="text-kept"),
        pytest.param('{"outcome": "clean"', '{"outcome": "clean"', id="truncated-json-kept-as-text"),
        pytest.param("[1, 2]", "[1, 2]", id="json-not-an-object-kept-as-text"),
        pytest.param(None, None, id="missing"),
    ],
)
def test_pod_document_keeps_a_report_that_is_not_a_json_object_as_text(message: str | None, report: Any) -> None:
    assert pod_document(native_pod(report=message))["report"] == report


def test_parse_report_reads_a_json_object() -> None:
    assert parse_report('{"outcome": "overrun", "margin_seconds": -1.5}') == {
        "outcome": "overrun",
        "margin_seconds": -1.5,
    }


def test_pod_document_of_a_pod_without_a_sidecar_has_no_report() -> None:
    document = pod_document(none_pod(message="the app wrote its own termination log"))
    assert document["sidecar_container"] is None
    assert document["report"] is None


def test_pod_document_run_mode_reads_the_report_of_the_one_container() -> None:
    document = pod_document(run_pod(report=CLEAN_REPORT))
    assert document["app_container"] == document["sidecar_container"] == APP
    assert document["report"] == json.loads(CLEAN_REPORT)


def requests_of(counted: Tally) -> dict[str, Any]:
    return counted.document()


def test_reasons_to_fail_none_for_a_clean_rollout() -> None:
    pods = [pod_document(native_pod("pod-1")), pod_document(run_pod("pod-2")), pod_document(none_pod("pod-3"))]
    assert reasons_to_fail(requests_of(tally(ok=100)), pods) == []


def test_reasons_to_fail_when_no_request_was_sent() -> None:
    assert reasons_to_fail(requests_of(Tally()), [pod_document(native_pod())]) == ["no request was sent"]


def test_reasons_to_fail_summarise_failures_by_kind() -> None:
    counted = tally(
        ok=7, drain=[Failure.RESET, Failure.RESET], exited=[Failure.REFUSED], no_endpoints=[Failure.REFUSED]
    )
    reasons = reasons_to_fail(requests_of(counted), [pod_document(native_pod())])
    assert reasons == ["4 of 11 requests failed (2 refused, 2 reset)"]


def test_reasons_to_fail_names_a_sigkill_with_its_time() -> None:
    record = native_pod("pod-2", app_exit=10.01, app_killed=10.0, sidecar_exit=10.5)
    reasons = reasons_to_fail(requests_of(tally(ok=10)), [pod_document(record)])
    assert reasons == ["pod-2: app was SIGKILLed 10.00s after deletion: its drain overran the 10s grace period"]


def test_reasons_to_fail_when_a_pod_ended_after_the_grace_period_without_sigkill() -> None:
    record = native_pod("pod-3", hook_end=9.5, app_exit=10.8, sidecar_exit=11.0)
    reasons = reasons_to_fail(requests_of(tally(ok=10)), [pod_document(record)])
    assert reasons == ["pod-3: did not terminate inside the 10s grace period"]


@pytest.mark.parametrize(
    ("report", "reason"),
    [
        pytest.param(None, "pod-1: no final report from shutdown-sidecar", id="missing"),
        pytest.param("not json", "pod-1: no final report from shutdown-sidecar", id="not-json"),
        pytest.param(
            json.dumps({"outcome": "overrun"}), "pod-1: the sidecar's report says outcome 'overrun'", id="overrun"
        ),
        pytest.param(json.dumps({"phase": "done"}), "pod-1: the sidecar's report says outcome None", id="no-outcome"),
    ],
)
def test_reasons_to_fail_when_the_sidecar_report_is_missing_or_not_clean(report: str | None, reason: str) -> None:
    assert reasons_to_fail(requests_of(tally(ok=10)), [pod_document(native_pod(report=report))]) == [reason]


def test_reasons_to_fail_does_not_blame_a_pod_without_a_sidecar_for_having_no_report() -> None:
    document = pod_document(none_pod())
    assert document["report"] is None
    assert reasons_to_fail(requests_of(tally(ok=10)), [document]) == []


def test_reasons_to_fail_lists_every_reason_in_order() -> None:
    pods = [
        pod_document(native_pod("pod-1", report=None)),
        pod_document(native_pod("pod-2", app_exit=10.01, app_killed=10.0, sidecar_exit=10.5)),
    ]
    reasons = reasons_to_fail(requests_of(tally(ok=1, exited=[Failure.TIMEOUT])), pods)
    assert [reason.split(":")[0] for reason in reasons] == ["1 of 2 requests failed (1 timeout)", "pod-1", "pod-2"]


def settings() -> dict[str, Any]:
    return {"grace_period_seconds": 10.0, "chart": None}


def test_result_document_passes_a_clean_rollout() -> None:
    records = [native_pod("pod-1"), native_pod("pod-2")]
    result = result_document(Mode.NATIVE, settings(), tally(ok=50), records, 12.34567)
    assert result["verdict"] == "pass"
    assert result["reasons"] == []
    assert result["mode"] == "native"
    assert result["settings"] == settings()
    assert result["duration_seconds"] == 12.346
    assert result["requests"] == tally(ok=50).document()
    assert [p["name"] for p in result["pods"]] == ["pod-1", "pod-2"]
    assert result["pods"][0] == pod_document(records[0])
    json.dumps(result)  # --json prints it as is


def test_result_document_fails_with_the_reasons() -> None:
    records = [none_pod("pod-1", app_exit=10.01, killed=10.0)]
    result = result_document(Mode.NONE, settings(), tally(ok=5, drain=[Failure.RESET]), records, 3.0)
    assert result["verdict"] == "fail"
    assert result["mode"] == "none"
    assert result["reasons"] == reasons_to_fail(result["requests"], result["pods"])
    assert len(result["reasons"]) == 2


def test_result_document_fails_on_a_crash_whatever_the_requests_say() -> None:
    crash = "new-2: app exited with status 1 before its pod was deleted"
    result = result_document(Mode.NATIVE, settings(), tally(ok=50), [], 3.0, crashes=[crash])
    assert result["verdict"] == "fail"
    assert result["reasons"] == [crash]


def test_pod_document_counts_the_requests_sent_after_the_endpoint_removal() -> None:
    assert pod_document(native_pod())["requests_after_endpoint_removal"] == {"sent": 0, "failed": 0}
    after = pod_document(native_pod(failed_after_removal=2))["requests_after_endpoint_removal"]
    assert after == {"sent": 5, "failed": 2}


def test_pod_document_places_the_pod_and_its_failed_requests_in_time() -> None:
    record = native_pod()
    record.failed_requests = [(DELETED_AT + 3.5, "reset", "drain"), (DELETED_AT - 0.25, "timeout", "running")]
    document = pod_document(record)
    assert document["deleted_after_seconds"] == DELETED_AT
    assert document["failed_requests"] == [[3.5, "reset", "drain"], [-0.25, "timeout", "running"]]


def test_reasons_to_fail_say_how_many_failures_were_on_reused_connections() -> None:
    counted = tally(ok=4)
    counted.add("drain", Result(None, Failure.RESET), reused=True)
    counted.add("exited", Result(None, Failure.REFUSED))
    (reason,) = reasons_to_fail(counted.document(), [])
    assert reason == "2 of 6 requests failed (1 refused, 1 reset; 1 on reused connections)"


def test_result_document_carries_the_load() -> None:
    load = {"client": "pooled", "balancer": "l4", "connections": 16, "connections_opened": 3}
    document = result_document(Mode.NATIVE, {}, tally(ok=3), [native_pod()], 1.0, load=load)
    assert document["load"] == load
    assert list(document)[:6] == ["verdict", "reasons", "mode", "settings", "duration_seconds", "load"]
