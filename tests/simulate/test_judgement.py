"""The judgement on the rehearsal's own lateness, from hand-made records: which failures it could
have caused (with the figure), what it could have hidden, and the verdict that follows."""

from __future__ import annotations

import dataclasses

import pytest

from sidecar.simulate.client import Failure, Result
from sidecar.simulate.judgement import (
    flattering,
    hook_doubt,
    no_endpoints_doubt,
    overrun_doubt,
    report_doubt,
    request_doubt,
    sigkill_doubt,
    split_request_failures,
)
from sidecar.simulate.lateness import SIGKILL, Lateness
from sidecar.simulate.load import Tally
from sidecar.simulate.podspec import Mode
from sidecar.simulate.records import FailedRequest, PodRecord
from sidecar.simulate.verdict import result_document
from tests.simulate.pod_records import APP, at, native_pod, none_pod

REMOVAL_DUE, REMOVAL_APPLIED = at(2.0), at(3.5)  # the endpoint removal reached the balancer 1.5 s late


def failed(
    kind: Failure = Failure.REFUSED, *, sent: float = 2.5, took: float = 0.01, late: float = 0.0, reused: bool = False
) -> FailedRequest:
    """A request to pod-1 that failed, `sent` seconds after its deletion."""
    return FailedRequest("pod-1", "prestop", kind.value, at(sent), at(sent + took), late, reused)


def stalled(*spans: tuple[float, float]) -> Lateness:
    """Lateness with the loop stalled over each (from, to), in seconds after the deletion."""
    return Lateness(stalls=[(at(since), at(to)) for since, to in spans])


@pytest.mark.parametrize(
    ("failure", "lateness", "cause"),
    [
        pytest.param(failed(late=0.4), Lateness(), "the load sent it late by 0.40s", id="sent-late"),
        pytest.param(
            failed(Failure.TIMEOUT, sent=1.0, took=5.0),
            stalled((2.0, 3.0)),
            "the rehearsal's event loop stalled while it waited, for 1.00s",
            id="timeout-in-a-stall",
        ),
        pytest.param(
            failed(sent=2.5), Lateness(), "pod-1's endpoint removal reached the balancer late, by 1.50s", id="removal"
        ),
    ],
)
def test_request_doubt_names_what_could_have_failed_it(failure: FailedRequest, lateness: Lateness, cause: str) -> None:
    removals = {"pod-1": (REMOVAL_DUE, REMOVAL_APPLIED)}
    doubt = request_doubt(failure, lateness, removals, per_request_balancing=False)
    assert str(doubt) == cause


@pytest.mark.parametrize(
    ("failure", "lateness", "per_request"),
    [
        pytest.param(failed(sent=1.0), Lateness(), False, id="before-the-removal-was-due"),
        pytest.param(failed(sent=4.0), Lateness(), False, id="after-the-removal-was-applied"),
        # An l4 client's kept-alive connection stays on its pod: a timely removal would not have moved it.
        pytest.param(failed(sent=2.5, reused=True), Lateness(), False, id="l4-reused-connection"),
        # A refusal comes at once: a stall while it was out changes nothing.
        pytest.param(failed(sent=1.0, took=0.5), stalled((1.0, 1.5)), False, id="refused-in-a-stall"),
        pytest.param(failed(sent=1.0, late=0.01), Lateness(), False, id="jitter"),
    ],
)
def test_request_doubt_is_none_where_lateness_changes_nothing(
    failure: FailedRequest, lateness: Lateness, per_request: bool
) -> None:
    removals = {"pod-1": (REMOVAL_DUE, REMOVAL_APPLIED)}
    assert request_doubt(failure, lateness, removals, per_request_balancing=per_request) is None


def test_request_doubt_counts_a_reused_connection_behind_an_l7_balancer() -> None:
    removals = {"pod-1": (REMOVAL_DUE, REMOVAL_APPLIED)}
    assert request_doubt(failed(sent=2.5, reused=True), Lateness(), removals, per_request_balancing=True) is not None


def test_split_request_failures_keeps_the_unexplained_ones() -> None:
    record = native_pod()
    record.endpoint_removal_due_at, record.endpoint_removed_at = REMOVAL_DUE, REMOVAL_APPLIED
    real, doubtful = split_request_failures(
        [failed(sent=1.0), failed(sent=2.5)], [record], Lateness(), per_request_balancing=False
    )
    assert [f.sent_at for f in real] == [at(1.0)]
    assert [f.sent_at for f, _ in doubtful] == [at(2.5)]


def killed_pod(kill_due: float = 10.0, killed: float = 10.0) -> PodRecord:
    record = native_pod(app_exit=killed + 0.01, app_killed=killed, sidecar_exit=killed + 0.1)
    record.containers[APP].kill_due_at = at(kill_due)
    return record


def test_sigkill_doubt_when_the_kill_ran_late() -> None:
    record = killed_pod(kill_due=10.0, killed=11.2)
    lateness = Lateness()
    lateness.add_records([record])
    doubt = sigkill_doubt(record, record.containers[APP], lateness)
    assert str(doubt) == "the kubelet's SIGKILL ran late, by 1.20s"


def test_sigkill_doubt_when_a_stall_cost_the_drain_a_whole_second() -> None:
    record = killed_pod()
    # The hook's return was seen at 3.0 s on waking from a stall that began at 2.2 s: it may have
    # taken 2.2 s, and the kubelet, which takes the hook's whole seconds from the grace period
    # left after the signal, would have given the app one second more.
    doubt = sigkill_doubt(record, record.containers[APP], stalled((2.2, 3.0)))
    assert str(doubt) == "the app's drain was cut short by the rehearsal's event loop stalling, by 1.00s"


def test_sigkill_doubt_none_when_a_stall_in_the_hook_cost_no_whole_second() -> None:
    record = native_pod(hook_end=3.6, app_exit=10.01, app_killed=10.0, sidecar_exit=10.1)
    record.containers[APP].kill_due_at = at(10.0)
    # 3.6 s or 3.2 s: three whole seconds either way, the same SIGKILL time.
    assert sigkill_doubt(record, record.containers[APP], stalled((3.2, 3.6))) is None


def test_sigkill_doubt_none_for_a_kill_on_time_without_stalls() -> None:
    record = killed_pod()
    lateness = Lateness()
    lateness.add_records([record])
    assert lateness.late_action("pod-1", SIGKILL) is None
    assert sigkill_doubt(record, record.containers[APP], lateness) is None


def test_overrun_doubt_when_the_stalls_exceed_the_overrun() -> None:
    record = native_pod(app_exit=10.3, sidecar_exit=10.4)  # 0.4 s past the 10 s grace period
    doubt = overrun_doubt(record, stalled((9.5, 10.4)))  # the exits were seen on waking from a 0.9 s stall
    assert doubt is not None
    assert str(doubt) == "it overran by 0.40s while the rehearsal ran late, by 0.90s"


def test_overrun_doubt_none_when_the_overrun_is_longer_than_the_lateness() -> None:
    record = native_pod(app_exit=12.0, sidecar_exit=12.1)
    assert overrun_doubt(record, stalled((11.8, 12.1))) is None


def test_overrun_doubt_counts_a_stop_signal_sent_late() -> None:
    # No stall around the exits: the app's hook went 0.6 s after the deletion (the kubelet's loop
    # was late), so its stop signal came as late and its drain ended 0.5 s past the grace period.
    record = native_pod(app_exit=10.5, sidecar_exit=10.5)
    app = record.containers[APP]
    app.hook_started_at = at(0.6)
    doubt = overrun_doubt(record, Lateness())
    assert str(doubt) == "it overran by 0.50s while the rehearsal ran late, by 0.60s"


def test_hook_doubt_when_the_hook_was_sent_late_or_waited_through_a_stall() -> None:
    record = native_pod()
    app = record.containers[APP]
    assert hook_doubt(record, app, Lateness()) is None
    assert str(hook_doubt(record, app, stalled((1.0, 2.0)))) == (
        "the rehearsal's event loop stalled during the hook, for 1.00s"
    )
    app.hook_started_at = at(6.0)  # the kubelet's loop stalled before it could send it
    app.hook_ended_at = at(6.0)
    assert str(hook_doubt(record, app, Lateness())) == "the kubelet sent the hook late, by 6.00s"


def test_report_doubt_only_when_the_apps_stop_signal_went_late() -> None:
    record = native_pod()
    assert report_doubt(record, Lateness()) is None
    assert report_doubt(record, stalled((1.0, 3.0))) is not None


def test_flattering_names_requests_due_in_a_drain_but_sent_after_it() -> None:
    # The app drained from 3.0 s to 4.5 s; the balancer routed to it until 5.0 s.
    record = native_pod(hook_end=3.0, app_exit=4.5, endpoint_removed=5.0)
    # Due at 4.0 s, sent at 4.6 s: it never met the drain. Due at 3.2 s, sent at 3.8 s: it did.
    lateness = Lateness(sends=[(at(4.0), 0.6), (at(3.2), 0.6)])
    assert flattering([record], lateness) == [
        "1 requests due while the app drained in pod-1, its endpoint still in the balancer, were sent only "
        "after it had exited (the load ran up to 0.60s behind its schedule): they never met the drain"
    ]


def test_flattering_none_for_a_late_load_once_the_balancer_no_longer_routed_to_the_drain() -> None:
    record = native_pod(hook_end=3.0, app_exit=4.5, endpoint_removed=2.0)  # removed before the drain
    assert flattering([record], Lateness(sends=[(at(4.0), 0.6)])) == []


def test_flattering_names_a_stop_signal_held_back_past_the_endpoint_removal() -> None:
    record = native_pod(hook_end=3.0, endpoint_removed=2.0)
    # The hook's return was seen at 3.0 s on waking from a stall that began at 1.5 s: the app could
    # have been signalled at 1.5 s, before the balancer stopped routing to it at 2.0 s.
    (line,) = flattering([record], stalled((1.5, 3.0)))
    assert line.startswith("the app's stop signal went up to 1.50s late in pod-1, until after its endpoint removal")


def test_flattering_none_for_a_late_stop_signal_that_still_came_after_the_removal() -> None:
    record = native_pod(hook_end=3.0, endpoint_removed=2.0)
    assert flattering([record], stalled((2.5, 3.0))) == []


def test_flattering_none_for_jitter() -> None:
    lateness = Lateness(sends=[(at(4.4), 0.05)], stalls=[(at(2.9), at(3.0))])
    assert flattering([native_pod()], lateness) == []


def tally_of(*failures: FailedRequest, ok: int = 100) -> Tally:
    counted = Tally()
    for _ in range(ok):
        counted.add("running", Result(200, None))
    for failure in failures:
        counted.add(failure.phase, Result(None, Failure(failure.kind)), reused=failure.reused)
        counted.failures.append(failure)
    return counted


def removal_late(record: PodRecord) -> PodRecord:
    record.endpoint_removal_due_at, record.endpoint_removed_at = REMOVAL_DUE, REMOVAL_APPLIED
    return record


def test_verdict_inconclusive_when_every_failure_could_be_the_rehearsals_lateness() -> None:
    document = result_document(Mode.NATIVE, {}, tally_of(failed(sent=2.5)), [removal_late(native_pod())], 10.0)
    assert document["verdict"] == "inconclusive"
    assert document["reasons"] == document["doubts"]
    assert document["doubts"] == [
        "1 of 101 requests failed (1 refused), each while the rehearsal ran late: "
        "pod-1's endpoint removal reached the balancer late, by 1.50s"
    ]


def test_verdict_fail_when_one_failure_is_not_the_rehearsals_lateness() -> None:
    counted = tally_of(failed(sent=2.5), failed(sent=1.0))
    document = result_document(Mode.NATIVE, {}, counted, [removal_late(native_pod())], 10.0)
    assert document["verdict"] == "fail"
    assert document["reasons"] == [
        "2 of 102 requests failed (2 refused); 1 of them while the rehearsal ran late "
        "(pod-1's endpoint removal reached the balancer late, by 1.50s)"
    ]


def test_verdict_inconclusive_for_a_pass_the_lateness_could_have_flattered() -> None:
    lateness = Lateness(sends=[(at(4.0), 0.6)])
    record = native_pod(endpoint_removed=5.0)
    document = result_document(Mode.NATIVE, {}, tally_of(), [record], 10.0, lateness=lateness)
    assert document["verdict"] == "inconclusive"
    assert document["doubts"][0].startswith("1 requests due while the app drained in pod-1")


def test_verdict_pass_stays_pass_for_lateness_that_could_only_have_caused_failures() -> None:
    # The balancer's update ran late (more traffic to the old pod: harder, not easier) and nothing failed.
    lateness = Lateness()
    lateness.action_late("pod-1", "endpoint update", at(2.0), at(3.5))
    document = result_document(Mode.NATIVE, {}, tally_of(), [removal_late(native_pod())], 10.0, lateness=lateness)
    assert (document["verdict"], document["doubts"]) == ("pass", [])
    assert document["lateness"]["actions_max_late_seconds"] == {"endpoint update": 1.5}


def test_verdict_fail_for_a_real_sigkill_in_a_late_rehearsal() -> None:
    # Mode none: the app ignores SIGTERM and the kubelet's SIGKILL is on time: the app's fault.
    record = none_pod(app_exit=10.01, killed=10.0)
    record.containers[APP].kill_due_at = at(10.0)
    lateness = stalled((20.0, 21.0))  # a stall long after the pod had gone
    document = result_document(Mode.NONE, {}, tally_of(), [record], 30.0, lateness=lateness)
    assert document["verdict"] == "fail"
    assert document["doubts"] == []


def test_lateness_stall_before_is_the_stall_just_woken_from() -> None:
    lateness = stalled((1.0, 2.0), (5.0, 5.5))
    assert lateness.stall_before(at(2.05)) == pytest.approx(1.05)
    assert lateness.stall_before(at(4.0)) == 0.0
    assert lateness.stalled_within(at(1.5), at(5.2)) == pytest.approx(0.7)


def test_lateness_document_gives_the_worst_figures() -> None:
    lateness = dataclasses.replace(stalled((1.0, 2.0), (5.0, 5.5)), sends=[(at(1.0), 0.6)], spawns=[0.1], starts=[2.0])
    lateness.action_late("pod-1", SIGKILL, at(10.0), at(10.25))
    assert lateness.document() == {
        "loop": {"max_lag_seconds": 1.0, "stalled_seconds": 1.5, "stalls": 2},
        "actions_max_late_seconds": {"SIGKILL": 0.25},
        "load": {"max_late_seconds": 0.6, "requests_sent_late": 1},
        "process_start": {
            "processes": 1,
            "max_spawn_seconds": 0.1,
            "max_seconds_to_ready": 2.0,
            "median_seconds_to_ready": 2.0,
        },
    }


def flapped_pod() -> PodRecord:
    """A pod not deleted that went NotReady at 20 s (after deletion of pod-1) and back at 22 s."""
    record = native_pod("new-1")
    record.deleted_at = None
    record.readiness_changes = [(at(-30.0), True), (at(20.0), False), (at(22.0), True)]
    return record


@pytest.mark.parametrize(
    ("stall", "sent", "doubtful"),
    [
        pytest.param(stalled((19.0, 19.8)), 23.0, True, id="probe-failed-in-a-stall"),
        pytest.param(Lateness(), 23.0, False, id="probe-failed-on-its-own"),
        pytest.param(stalled((19.0, 19.8)), 25.0, False, id="after-the-pod-was-back"),
    ],
)
def test_no_endpoints_doubt_for_a_pod_that_left_the_balancer_after_a_probe_failed_in_a_stall(
    stall: Lateness, sent: float, doubtful: bool
) -> None:
    refused = FailedRequest("", "no_endpoints", Failure.REFUSED.value, at(sent), at(sent), 0.0)
    doubt = no_endpoints_doubt(refused, [flapped_pod()], stall, propagation_seconds=2.0)
    assert (doubt is not None) == doubtful
    if doubt is not None:
        assert str(doubt).startswith("new-1 left the balancer after a readiness probe failed")


def test_lateness_stall_before_joins_the_backlog_after_a_long_stall() -> None:
    # A 6 s stall, then the loop working through its backlog: shorter stalls a tick apart.
    lateness = stalled((0.1, 6.0), (6.05, 6.2), (6.25, 6.4))
    assert lateness.stall_before(at(6.45)) == pytest.approx(6.35)
    assert lateness.stall_before(at(7.0)) == 0.0


def test_split_request_failures_asks_about_missing_endpoints_only_for_a_request_that_found_no_pod() -> None:
    # The same instant and stall as "probe-failed-in-a-stall", but the balancer had chosen pod-1:
    # the other pod's absence from the balancer cannot have failed it.
    refused = FailedRequest("pod-1", "drain", Failure.REFUSED.value, at(23.0), at(23.0), 0.0)
    real, doubtful = split_request_failures(
        [refused], [flapped_pod()], stalled((19.0, 19.8)), per_request_balancing=True, propagation_seconds=2.0
    )
    assert (real, doubtful) == ([refused], [])
