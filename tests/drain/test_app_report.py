from __future__ import annotations

import asyncio
import sys

import pytest
from prometheus_client import CollectorRegistry

from sidecar.deadline import Budget
from sidecar.drain.app_report import (
    AppReport,
    DrainReport,
    DrainReportError,
    TooManyWorkers,
    own_pid_namespace,
    parse_drain_report,
)
from sidecar.lifecycle import Phase, Timeline
from sidecar.telemetry.metrics import ShutdownMetrics
from sidecar.telemetry.report import TaskOutcome


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
        pytest.param(b'{"requests_started": -1}', id="requests-started-negative"),
        pytest.param(b'{"requests_started": 2.5}', id="requests-started-fraction"),
        pytest.param(b'{"requests_started": true}', id="requests-started-bool"),
        pytest.param(b'{"requests_started": "12"}', id="requests-started-text"),
        pytest.param(b'{"requests_started": 9007199254740992}', id="requests-started-above-2-53"),
        pytest.param(b'{"requests_started": ' + b"9" * 5000 + b"}", id="requests-started-5000-digits"),
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


def test_app_report_accepts_a_count_of_requests_started_and_reports_without_one() -> None:
    assert parse_drain_report(b'{"inflight": 1, "requests_started": 7}').requests_started == 7
    assert parse_drain_report(b'{"requests_started": 0, "worker": 12}') == DrainReport(
        None, complete=False, worker="12", requests_started=0
    )
    assert parse_drain_report(b'{"inflight": 1}').requests_started is None  # an older integration


def test_app_report_a_bad_count_of_requests_started_is_named() -> None:
    with pytest.raises(DrainReportError, match='"requests_started" must be a whole number from 0 to 9007199254740991'):
        parse_drain_report(b'{"inflight": 0, "requests_started": -3}')


def test_app_report_turns_each_workers_requests_started_into_arrivals() -> None:
    registry = CollectorRegistry()
    metrics = ShutdownMetrics(registry, version="test", grace_period_seconds=30)
    app_report = AppReport(metrics=metrics, report_end=lambda: False, max_workers=2)
    assert registry.get_sample_value("sidecar_app_requests_started_total") == 0  # a series from start-up
    for worker, count in (("1", 10), ("2", 0), ("1", 15), ("2", 4), ("1", 2)):
        app_report.apply(DrainReport(0, complete=False, worker=worker, requests_started=count))
    app_report.apply(DrainReport(0, complete=False, worker="1"))  # no count: nothing changes
    assert app_report.requests.arrivals.total == 9  # 5 from worker 1, 4 from worker 2; 15 -> 2 is a restart
    assert registry.get_sample_value("sidecar_app_requests_started_total") == 9
    app_report.apply(DrainReport(None, complete=False, exited=True, worker="2"))
    app_report.apply(DrainReport(0, complete=False, worker="3", requests_started=50))  # takes worker 2's place
    app_report.apply(DrainReport(None, complete=False, exited=True, worker="3"))
    app_report.apply(DrainReport(0, complete=False, worker="2", requests_started=99))  # back: a baseline again
    assert app_report.requests.arrivals.total == 9


def test_app_report_says_at_each_report_that_the_app_reports() -> None:
    # The sequence then awaits the app's `complete` instead of ending the drain at its listener.
    metrics = ShutdownMetrics(CollectorRegistry(), version="test", grace_period_seconds=30)
    heard: list[str] = []
    app_report = AppReport(metrics=metrics, report_end=lambda: False, on_report=lambda: heard.append("report"))
    app_report.apply(DrainReport(0, complete=False, worker="1"))
    app_report.apply(DrainReport(2, complete=False, worker="1"))
    assert heard == ["report", "report"]


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


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b'{"inflight": 1, "worker": ""}', id="empty-worker"),
        pytest.param(b'{"inflight": 1, "worker": "' + b"w" * 65 + b'"}', id="long-worker"),
        pytest.param(b'{"inflight": 1, "worker": "a\\nb"}', id="control-character"),
        pytest.param('{"inflight": 1, "worker": "wörker"}'.encode(), id="non-ascii"),
        pytest.param(b'{"inflight": 1, "worker": -1}', id="negative-pid"),
        pytest.param(b'{"inflight": 1, "worker": 99999999999}', id="pid-past-pid-max"),
        pytest.param(b'{"inflight": 1, "worker": 1.5}', id="fraction"),
        pytest.param(b'{"inflight": 1, "worker": ["a"]}', id="list"),
        pytest.param(b'{"inflight": 1, "worker": true}', id="bool"),
        pytest.param(b'{"worker": "a"}', id="worker-alone"),
        pytest.param(b'{"inflight": 1, "pid_namespace": 7}', id="namespace-not-text"),
    ],
)
def test_app_report_rejects_bad_worker_fields(body: bytes) -> None:
    with pytest.raises(DrainReportError):
        parse_drain_report(body)


def test_app_report_parses_worker_ids_as_text_and_pids() -> None:
    report = parse_drain_report(b'{"inflight": 2, "worker": 4242, "pid_namespace": "pid:[1]"}')
    assert (report.worker, report.pid, report.pid_namespace) == ("4242", 4242, "pid:[1]")
    named = parse_drain_report(b'{"event": "exit", "worker": "web-1"}')
    assert (named.worker, named.pid, named.exited, named.complete) == ("web-1", None, True, False)


def test_app_report_parses_the_apps_background_tasks() -> None:
    body = b'{"event": "complete", "tasks": {"finished": ["flush"], "cancelled": ["refresh"], "waited_seconds": 1}}'
    report = parse_drain_report(body)
    assert report.tasks == TaskOutcome(("flush",), ("refresh",), (), 1.0)
    assert parse_drain_report(b'{"event": "complete"}').tasks is None


@pytest.mark.parametrize(
    "tasks",
    [
        pytest.param(b"[]", id="not-an-object"),
        pytest.param(b'{"running": []}', id="unknown-key"),
        pytest.param(b'{"cancelled": "refresh"}', id="not-a-list"),
        pytest.param(b'{"cancelled": [""]}', id="empty-name"),
        pytest.param(b'{"cancelled": ["' + b"t" * 65 + b'"]}', id="long-name"),
        pytest.param('{"cancelled": ["t\u00e4sk"]}'.encode(), id="non-ascii-name"),
        pytest.param(b'{"cancelled": [7]}', id="name-not-text"),
        pytest.param(b'{"stuck": [' + b",".join(b'"t%d"' % n for n in range(33)) + b"]}", id="33-names"),
        pytest.param(b'{"waited_seconds": -1}', id="negative-wait"),
        pytest.param(b'{"waited_seconds": NaN}', id="nan-wait"),
        pytest.param(b'{"waited_seconds": 1e999}', id="infinite-wait"),
        pytest.param(b'{"waited_seconds": true}', id="bool-wait"),
        pytest.param(b'{"waited_seconds": "1"}', id="text-wait"),
    ],
)
def test_app_report_rejects_bad_tasks(tasks: bytes) -> None:
    with pytest.raises(DrainReportError, match="tasks"):
        parse_drain_report(b'{"event": "complete", "tasks": ' + tasks + b"}")


def test_app_report_keeps_each_workers_tasks() -> None:
    app_report = new_app_report([])
    app_report.apply(parse_drain_report(b'{"event": "complete", "worker": 7, "tasks": {"cancelled": ["loop"]}}'))
    assert app_report.activity.workers["7"].tasks == TaskOutcome(cancelled=("loop",))


def new_app_report(ends: list[str], *, max_workers: int = 256, namespace: str = "pid:[test]") -> AppReport:
    metrics = ShutdownMetrics(CollectorRegistry(), version="test", grace_period_seconds=30)

    def report_end() -> bool:
        ends.append("end")
        return True

    return AppReport(metrics=metrics, report_end=report_end, pid_namespace=namespace, max_workers=max_workers)


def shut_down(app_report: AppReport) -> None:
    """Drive the listener through t0 and the stop, as the timeline would."""
    timeline = Timeline(Budget(30, 5, 1))
    app_report.on_phase_change(Phase.RUNNING, Phase.PRESTOP_DELAY, timeline)
    app_report.on_phase_change(Phase.PRESTOP_DELAY, Phase.DRAIN, timeline)


def test_app_report_sums_workers_and_ends_the_drain_when_every_worker_has_completed() -> None:
    ends: list[str] = []
    app_report = new_app_report(ends)
    app_report.apply(DrainReport(3, complete=False, worker="1"))
    app_report.apply(DrainReport(4, complete=False, worker="2"))
    assert app_report.metrics.registry.get_sample_value("sidecar_app_inflight") == 7
    shut_down(app_report)
    app_report.apply(DrainReport(9, complete=False, worker="2"))
    assert not app_report.apply(DrainReport(0, complete=True, worker="1"))
    assert ends == []
    assert app_report.apply(DrainReport(None, complete=True, worker="2"))
    assert ends == ["end"]
    activity = app_report.activity
    assert (activity.inflight_at_stop, activity.inflight_peak, activity.inflight) == (7, 12, 0)
    assert activity.complete_at is not None
    assert activity.workers["1"].complete_at is not None


def test_app_report_a_worker_that_exits_counts_as_finished_but_exits_alone_end_nothing() -> None:
    ends: list[str] = []
    app_report = new_app_report(ends)
    app_report.apply(DrainReport(2, complete=False, exited=True, worker="recycled"))
    app_report.apply(DrainReport(1, complete=False, worker="live"))
    assert app_report.metrics.registry.get_sample_value("sidecar_app_inflight") == 1
    shut_down(app_report)
    assert not app_report.apply(DrainReport(None, complete=False, exited=True, worker="live"))
    assert ends == []  # nobody said complete: the app's process exit is another source's to see


def test_app_report_refuses_a_worker_beyond_the_cap_unless_an_exited_one_makes_room() -> None:
    app_report = new_app_report([], max_workers=2)
    app_report.apply(DrainReport(1, complete=False, worker="a"))
    app_report.apply(DrainReport(1, complete=False, worker="b"))
    with pytest.raises(TooManyWorkers):
        app_report.apply(DrainReport(5, complete=False, worker="c"))
    assert set(app_report.activity.workers) == {"a", "b"}
    assert app_report.metrics.registry.get_sample_value("sidecar_app_inflight") == 2
    app_report.apply(DrainReport(None, complete=False, exited=True, worker="a"))
    app_report.apply(DrainReport(5, complete=False, worker="c"))
    assert set(app_report.activity.workers) == {"b", "c"}


@pytest.mark.anyio
async def test_app_report_a_worker_that_dies_silently_in_our_pid_namespace_does_not_hold_the_drain() -> None:
    ended = asyncio.Event()
    metrics = ShutdownMetrics(CollectorRegistry(), version="test", grace_period_seconds=30)
    namespace = own_pid_namespace()
    assert namespace is not None
    app_report = AppReport(metrics=metrics, report_end=lambda: ended.set() is None, pid_namespace=namespace)
    worker = await asyncio.create_subprocess_exec(sys.executable, "-c", "import time; time.sleep(60)")
    try:
        app_report.apply(DrainReport(1, complete=False, worker=str(worker.pid), pid_namespace=namespace))
        app_report.apply(DrainReport(0, complete=False, worker="other"))
        shut_down(app_report)
        app_report.apply(DrainReport(0, complete=True, worker="other"))
        assert not ended.is_set()
        worker.kill()
        async with asyncio.timeout(10):  # the pidfd wakes the loop when the process exits
            await ended.wait()
        assert app_report.activity.workers[str(worker.pid)].exited
    finally:
        if worker.returncode is None:
            worker.kill()
        await worker.wait()
        app_report.close()


@pytest.mark.anyio
async def test_app_report_a_pid_from_another_namespace_is_never_watched() -> None:
    ends: list[str] = []
    app_report = new_app_report(ends, namespace="pid:[ours]")
    app_report.apply(DrainReport(1, complete=False, worker="1", pid_namespace="pid:[theirs]"))
    app_report.apply(DrainReport(0, complete=False, worker="2", pid_namespace=None))
    assert not app_report.activity.workers["1"].exited
    assert app_report._exit_watches == {}
