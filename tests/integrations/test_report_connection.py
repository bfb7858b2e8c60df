"""The reporter's kept connection to the sidecar: reports share one connection, a connection the
server closed is replaced (the report sent once more, and received once), an idle one is closed
before the admin server would, a forked child never writes on its parent's; and against a real
sidecar, reporters holding connections at its connection cap neither stop a probe or /prestop
being answered nor lose a report, and a restarted sidecar gets the next report."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator

import pytest

from sidecar.admin.protocol import KEEP_ALIVE_SECONDS
from sidecar.integrations import report_connection
from sidecar.integrations.reporter import DrainReporter
from tests.e2e.sidecar_process import START_TIMEOUT_SECONDS, SidecarProcess, wait_until
from tests.faults.hostile import fresh_request
from tests.integrations.drain_recorder import DrainRecorder

StartSidecar = Callable[..., SidecarProcess]
KUBELET_PROBE_TIMEOUT_SECONDS = 1.0


@pytest.fixture
def reporters() -> Iterator[list[DrainReporter]]:
    made: list[DrainReporter] = []
    yield made
    for reporter in made:
        reporter.close()


def test_report_connection_is_closed_by_the_reporter_before_the_admin_server_would() -> None:
    # Closing first, the reporter never sends a report into the server's keep-alive close.
    assert report_connection.IDLE_SECONDS < KEEP_ALIVE_SECONDS


def test_report_connection_carries_many_reports(reporters: list[DrainReporter]) -> None:
    with DrainRecorder(keep_alive=True) as sidecar:
        reporter = DrainReporter(sidecar.url, worker="web-1")
        reporters.append(reporter)
        for inflight in range(20):
            reporter.set_inflight(inflight)
            assert reporter.flush(10)
        assert [report["inflight"] for report in sidecar.reports] == list(range(20))
        assert len(set(sidecar.ports)) == 1, f"{len(set(sidecar.ports))} connections for 20 reports"


def test_report_connection_closed_under_a_report_is_replaced_and_the_report_arrives_once(
    reporters: list[DrainReporter],
) -> None:
    """The server closes each connection at its second request, unanswered and unread (as an idle
    connection's close crossing a request): each such report goes once more, on a new connection."""
    with DrainRecorder(keep_alive=True, drop_at=2) as sidecar:
        reporter = DrainReporter(sidecar.url, worker="web-1", counts_requests=True)
        reporters.append(reporter)
        for _ in range(3):
            reporter.request_started()
            reporter.set_inflight(1)
            assert reporter.flush(10)
        assert sidecar.dropped == 2
        assert [report["requests_started"] for report in sidecar.reports] == [1, 2, 3]  # each once, none lost
        assert len(set(sidecar.ports)) == 3
        assert reporter.failures == 0


def test_report_connection_a_new_connection_that_fails_is_not_tried_again(reporters: list[DrainReporter]) -> None:
    """Only a kept connection's close earns a second try: a sidecar failing a fresh one is not
    asked twice (each report stays one try's timeout long); the next report carries the values."""
    with DrainRecorder(keep_alive=True, drop_at=1) as sidecar:
        reporter = DrainReporter(sidecar.url, worker="web-1")
        reporters.append(reporter)
        reporter.set_inflight(1)
        assert reporter.flush(10)
        assert (sidecar.dropped, sidecar.reports, reporter.failures) == (1, [], 1)


def test_report_connection_is_closed_once_idle_and_reopened_for_the_next_report(
    monkeypatch: pytest.MonkeyPatch, reporters: list[DrainReporter]
) -> None:
    monkeypatch.setattr(report_connection, "IDLE_SECONDS", 0.5)
    with DrainRecorder(keep_alive=True) as sidecar:
        reporter = DrainReporter(sidecar.url, worker="web-1")
        reporters.append(reporter)
        reporter.set_inflight(1)
        assert reporter.flush(10)
        reporter.set_inflight(2)
        assert reporter.flush(10)
        first = sidecar.ports[0]
        assert sidecar.ports == [first, first]
        wait_until(lambda: first in sidecar.ended, 5, what="the reporter to close its idle connection")
        reporter.set_inflight(3)
        assert reporter.flush(10)
        assert [report["inflight"] for report in sidecar.reports] == [1, 2, 3]
        assert sidecar.ports[2] != first
        assert reporter.failures == 0


FORKING_WORKER = """
import os, sys
from sidecar.integrations.reporter import DrainReporter
reporter = DrainReporter(sys.argv[1])
reporter.set_inflight(1)
assert reporter.flush(10)  # the parent's connection is open now
child = os.fork()
if child == 0:
    reporter.set_inflight(5)
    os._exit(0 if reporter.flush(10) and reporter.failures == 0 else 1)
_, status = os.waitpid(child, 0)
reporter.set_inflight(2)
assert reporter.flush(10) and reporter.failures == 0
sys.exit(os.waitstatus_to_exitcode(status))
"""


def test_report_connection_a_forked_child_opens_its_own_and_leaves_its_parents_open() -> None:
    with DrainRecorder(keep_alive=True) as sidecar:
        worker = subprocess.run([sys.executable, "-c", FORKING_WORKER, sidecar.url], timeout=30, check=False)
        assert worker.returncode == 0
        by_inflight = {
            report["inflight"]: (report["worker"], port)
            for report, port in zip(sidecar.reports, sidecar.ports, strict=True)
        }
        assert sorted(by_inflight) == [1, 2, 5]
        (parent, parent_port), (child, child_port) = by_inflight[1], by_inflight[5]
        assert by_inflight[2] == (parent, parent_port), "the parent's connection survived its child"
        assert child != parent
        assert child_port != parent_port


# The admin server's cap is (descriptor limit - 64 kept for the rest) / 2: 8 connections here.
FD_LIMIT = 80
CAP = 8
REPORTERS = 12


@pytest.mark.timeout(60)
def test_report_connection_reporters_at_the_connection_cap_neither_crowd_out_probes_nor_lose_reports(
    start_sidecar: StartSidecar, reporters: list[DrainReporter]
) -> None:
    sidecar = start_sidecar(
        "--grace-period", "5", "--prestop-delay", "0", "--report-reserve", "0.5",
        prefix=["prlimit", f"--nofile={FD_LIMIT}:{FD_LIMIT}", "--"],
    )  # fmt: skip
    reporters.extend(DrainReporter(sidecar.url(""), worker=f"w{n}") for n in range(REPORTERS))
    for n, reporter in enumerate(reporters):
        reporter.set_inflight(n)
        assert reporter.flush(10)
    # Kept connections past the cap: the oldest idle ones were evicted as newer ones came.
    assert sidecar.metric("sidecar_admin_connections_closed_total", {"reason": "evicted"}) >= REPORTERS - CAP
    answered, seconds = fresh_request(sidecar.port, "GET", "/readyz", timeout=5)
    assert (answered, seconds < KUBELET_PROBE_TIMEOUT_SECONDS) == (200, True), f"/readyz: {answered} in {seconds:.3f} s"
    for reporter in reporters:  # each on its kept connection, or a new one when it was evicted
        reporter.set_inflight(1)
        assert reporter.flush(10)
    assert sidecar.metric("sidecar_app_inflight") == REPORTERS  # every report arrived
    assert [reporter.failures for reporter in reporters] == [0] * REPORTERS
    answered, seconds = fresh_request(sidecar.port, "POST", "/prestop", timeout=5)
    assert (answered, seconds < KUBELET_PROBE_TIMEOUT_SECONDS) == (200, True), (
        f"/prestop: {answered} in {seconds:.3f} s"
    )


def serve_on(port: int) -> SidecarProcess:
    process = SidecarProcess(["serve", "--host", "127.0.0.1", "--port", str(port), "--termination-log", ""])
    process.wait_for_log(lambda line: line.get("msg") == "sidecar ready", START_TIMEOUT_SECONDS)
    process.port = port
    return process


def test_report_connection_a_restarted_sidecar_gets_the_next_report(
    start_sidecar: StartSidecar, reporters: list[DrainReporter]
) -> None:
    first = start_sidecar()
    reporter = DrainReporter(first.url(""), worker="web-1", counts_requests=True)
    reporters.append(reporter)
    reporter.set_inflight(1)
    assert reporter.flush(10)
    first.close()  # SIGKILLed: the kept connection is closed by the kernel
    second = serve_on(first.port)
    try:
        reporter.request_started()
        reporter.set_inflight(2)
        assert reporter.flush(10)
        assert second.metric("sidecar_app_inflight") == 2
        assert reporter.failures == 0
    finally:
        second.close()
