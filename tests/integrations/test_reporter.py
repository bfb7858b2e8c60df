from __future__ import annotations

import json
import os
import socket
import threading

import pytest

from sidecar.drain.app_report import parse_drain_report
from sidecar.integrations.reporter import DrainReporter, pid_namespace
from tests.e2e.sidecar_process import wait_until
from tests.integrations.drain_recorder import DrainRecorder


def test_reporter_coalesces_changes_and_always_sends_the_last_value() -> None:
    with DrainRecorder() as sidecar:
        reporter = DrainReporter(sidecar.url)
        for inflight in range(1, 1001):
            reporter.set_inflight(inflight)
        assert reporter.flush(10)
        reporter.close()
    assert 1 <= len(sidecar.reports) < 100  # a thousand changes, a few reports
    last = sidecar.reports[-1]
    assert last == {"path": "/drain", "inflight": 1000, "worker": os.getpid(), "pid_namespace": pid_namespace()}


def test_reporter_sends_completion_with_the_count_and_a_fixed_worker_id() -> None:
    with DrainRecorder() as sidecar:
        reporter = DrainReporter(sidecar.url + "/", worker="web-1")
        reporter.set_inflight(0)
        reporter.report_event("complete")
        assert reporter.flush(10)
    assert sidecar.reports[-1] == {"path": "/drain", "worker": "web-1", "inflight": 0, "event": "complete"}


def test_reporter_a_slow_sidecar_delays_no_caller() -> None:
    hold = threading.Event()
    with DrainRecorder(hold=hold) as sidecar:
        reporter = DrainReporter(sidecar.url)
        for inflight in range(10_000):
            reporter.set_inflight(inflight)  # returns at once though every report hangs
        assert not reporter.flush(0.05)
        hold.set()
        assert reporter.flush(10)
        wait_until(lambda: sidecar.reports and sidecar.reports[-1]["inflight"] == 9999, 10, what="the last value")


def test_reporter_a_sidecar_that_is_down_is_counted_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    reporter = DrainReporter(f"http://127.0.0.1:{port}")
    reporter.set_inflight(1)
    assert reporter.flush(10)
    reporter.report_event("complete")
    assert reporter.flush(10)
    assert reporter.failures == 2
    assert sum("sidecar drain report failed" in record.getMessage() for record in caplog.records) == 1


def test_reporter_refuses_what_is_not_an_http_url() -> None:
    with pytest.raises(ValueError, match="not an http:// URL"):
        DrainReporter("https://127.0.0.1:9180")


def test_reporter_without_a_sidecar_sends_nothing_and_flushes_at_once() -> None:
    reporter = DrainReporter(None)
    reporter.set_inflight(1)
    reporter.report_event("complete")
    assert reporter.flush(10)
    assert reporter._thread is None


def test_reporter_close_right_after_a_report_sends_it_and_ends_the_thread() -> None:
    with DrainRecorder() as sidecar:
        reporter = DrainReporter(sidecar.url, worker=4242)
        reporter.report_event("exit")
        reporter.close()  # before the thread has even woken: it must neither lose the report nor hang
        assert reporter._thread is not None
        reporter._thread.join(10)
        assert not reporter._thread.is_alive()
    assert sidecar.reports == [{"path": "/drain", "worker": 4242, "event": "exit"}]


def test_reporter_sends_the_tasks_with_the_event_in_a_shape_the_sidecar_accepts() -> None:
    names = ["refresh-cache", "t\u00e4sk", "x" * 100, "", *(f"loop-{n}" for n in range(40))]
    with DrainRecorder() as sidecar:
        reporter = DrainReporter(sidecar.url, worker=4242)
        tasks = {"finished": [], "cancelled": names, "stuck": [], "waited_seconds": 1.0}
        reporter.report_event("complete", tasks=tasks)
        assert reporter.flush(10)
        reporter.close()
    [report] = sidecar.reports
    report.pop("path")
    parsed = parse_drain_report(json.dumps(report).encode())  # the sidecar's own parser: no 400
    assert parsed.tasks is not None
    assert parsed.tasks.cancelled[:4] == ("refresh-cache", "t?sk", "x" * 64, "?")
    assert len(parsed.tasks.cancelled) == 32


def test_reporter_a_request_started_is_reported_even_when_the_inflight_count_ends_the_same() -> None:
    with DrainRecorder() as sidecar:
        reporter = DrainReporter(sidecar.url, worker="web-1", counts_requests=True)
        reporter.set_inflight(0)
        assert reporter.flush(10)
        assert sidecar.reports[-1] == {"path": "/drain", "worker": "web-1", "inflight": 0, "requests_started": 0}
        for _ in range(3):  # three quick requests, each in and out before the thread sends
            reporter.request_started()
            reporter.set_inflight(1)
            reporter.set_inflight(0)
        assert reporter.flush(10)
        reporter.close()
    assert sidecar.reports[-1] == {"path": "/drain", "worker": "web-1", "inflight": 0, "requests_started": 3}
    bodies = [{key: value for key, value in report.items() if key != "path"} for report in sidecar.reports]
    assert [parse_drain_report(json.dumps(body).encode()).requests_started for body in bodies][-1] == 3


def test_reporter_without_counting_requests_sends_no_count() -> None:
    with DrainRecorder() as sidecar:
        reporter = DrainReporter(sidecar.url, worker="celery-1")
        reporter.set_inflight(2)
        reporter.report_event("exit")
        assert reporter.flush(10)
    assert all("requests_started" not in report for report in sidecar.reports)


@pytest.mark.parametrize("keep_alive", [pytest.param(False, id="closing"), pytest.param(True, id="keep-alive")])
def test_reporter_an_older_sidecar_refusing_the_count_still_gets_every_report_without_it(keep_alive: bool) -> None:
    with DrainRecorder(refused_key="requests_started", keep_alive=keep_alive) as sidecar:
        reporter = DrainReporter(sidecar.url, worker="web-1", counts_requests=True)
        reporter.request_started()
        reporter.set_inflight(1)
        assert reporter.flush(10)
        reporter.request_started()
        reporter.set_inflight(0)
        reporter.report_event("complete")
        assert reporter.flush(10)
    assert len(sidecar.refused) == 1  # asked once, then never again
    assert sidecar.reports == [
        {"path": "/drain", "worker": "web-1", "inflight": 1},
        {"path": "/drain", "worker": "web-1", "inflight": 0, "event": "complete"},
    ]
    assert reporter.failures == 0
