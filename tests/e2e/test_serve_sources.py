"""serve mode's drain-end sources, each against a real demo app process on a real port."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.process_tree import end_session
from tests.e2e.sidecar_process import SidecarProcess, wait_until
from tests.e2e.test_run import assert_exited_during_the_hold, exits_on_its_own_when, free_port

StartSidecar = Callable[..., SidecarProcess]


class DemoApp:
    """The app container: `python -m sidecar.demo` on a real port."""

    def __init__(self, *args: str) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sidecar.demo", "--port", str(self.port), *args],
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # close() kills the session
        )
        assert self.proc.stderr is not None
        assert "demo listening" in self.proc.stderr.readline()
        self.exited_at: float | None = None

    def terminate(self) -> None:
        """What the kubelet does once the preStop hook has returned."""
        self.proc.send_signal(signal.SIGTERM)

    def close(self) -> None:
        end_session(self.proc)
        if self.proc.stderr is not None:
            self.proc.stderr.close()


@pytest.fixture
def demo_apps() -> Iterator[Callable[..., DemoApp]]:
    apps: list[DemoApp] = []

    def start(*args: str) -> DemoApp:
        app = DemoApp(*args)
        apps.append(app)
        return app

    yield start
    for app in apps:
        app.close()


class Load:
    """A bounded loopback load: one new connection per request, until stopped or 2000 requests."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.results: list[int | str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set() and len(self.results) < 2000:
            try:
                response = httpx.get(f"http://127.0.0.1:{self.port}/", timeout=2, headers={"Connection": "close"})
                self.results.append(response.status_code)
            except httpx.TransportError as exc:
                self.results.append(type(exc).__name__)
            self._stop.wait(0.01)

    def stop(self) -> list[int | str]:
        self._stop.set()
        self._thread.join(timeout=5)
        return self.results


def test_serve_app_port_drain_ends_when_the_listener_and_last_connection_are_gone(
    start_sidecar: StartSidecar, demo_apps: Callable[..., DemoApp]
) -> None:
    app = demo_apps("--latency", "0.2")
    sidecar = start_sidecar("--grace-period", "10", "--prestop-delay", "1", "--app-port", str(app.port))
    load = Load(app.port)
    wait_until(lambda: len(load.results) >= 3, 5, what="traffic to flow")

    sidecar.send_signal(signal.SIGTERM)  # t0; traffic keeps arriving for 0.6 s: late connections
    wait_until(lambda: sidecar.get("/status").json()["time_left_seconds"] <= 9.4, 3, what="0.6 s after t0")
    results = load.stop()
    sidecar.wait_for_log(lambda line: line.get("to") == "drain", 3)
    app.terminate()  # the kubelet's SIGTERM once the hook has returned
    assert sidecar.wait(timeout=8) == 0

    assert all(result == 200 for result in results), results
    report = sidecar.report()
    # The listener closing is not the app finishing: nothing here could see its process end.
    assert (report["outcome"], report["drain_end_source"]) == ("unknown", "connections")
    assert report["margin_seconds"] is None
    assert "nothing saw the app finish" in report["outcome_reason"]
    assert report["late_connections"] > 0
    assert 0 < report["last_late_connection_seconds"] < 1
    assert report["prestop_delay_covered_late_connections"] is True


def test_serve_watch_process_drain_ends_at_the_process_exit(
    start_sidecar: StartSidecar, demo_apps: Callable[..., DemoApp]
) -> None:
    app = demo_apps("--latency", "0.0123")  # a command line nothing else on the machine has
    sidecar = start_sidecar("--grace-period", "10", "--prestop-delay", "0.3", "--watch-process", r"0\.0123")
    sidecar.post("/prestop")
    sidecar.wait_for_log(lambda line: line.get("msg") == "watching the app process", 2)
    app.terminate()
    app.proc.wait(timeout=5)
    exited = time.time()
    assert sidecar.wait(timeout=5) == 0

    report = sidecar.report()
    assert (report["outcome"], report["drain_end_source"]) == ("clean", "process_exit")
    assert report["drain_end"] == pytest.approx(exited, abs=0.1)
    assert report["margin_seconds"] > 9


def test_serve_watched_app_that_exits_on_its_own_while_prestop_holds_its_stop_is_app_exit(
    start_sidecar: StartSidecar, tmp_path: Path
) -> None:
    flag = tmp_path / "exit-now"
    app = subprocess.Popen(exits_on_its_own_when(flag, 0), start_new_session=True)
    try:
        sidecar = start_sidecar("--grace-period", "6", "--prestop-delay", "1.5", "--watch-pid", str(app.pid))
        hook = threading.Thread(target=sidecar.get, args=("/prestop",))  # the app's preStop hook, held
        hook.start()
        sidecar.wait_for_log(lambda line: line.get("msg") == "watching the app process", 2)
        flag.touch()  # the app goes while the kubelet still waits on its hook: it was never signalled
        assert app.wait(timeout=5) == 0
        assert sidecar.wait(timeout=8) == 0
        hook.join(timeout=5)
    finally:
        end_session(app)

    report = sidecar.report()
    assert report["trigger"] == "prestop"
    assert_exited_during_the_hold(report, 1.5)


def test_serve_watch_process_that_matches_nothing_is_named_in_errors(start_sidecar: StartSidecar) -> None:
    sidecar = start_sidecar("--grace-period", "1.5", "--prestop-delay", "0.1", "--report-reserve", "0.5",
                            "--watch-process", "no-such-process-anywhere-xyz")  # fmt: skip
    sidecar.send_signal(signal.SIGTERM)
    assert sidecar.wait(timeout=5) == 0
    report = sidecar.report()
    # Not timeout: no process was seen running; the watch that could not start decides nothing.
    assert report["outcome"] == "unknown"
    assert any("no-such-process-anywhere-xyz" in error for error in report["errors"])


def test_serve_native_sidecar_sigterm_after_prestop_ends_the_drain(start_sidecar: StartSidecar) -> None:
    sidecar = start_sidecar("--grace-period", "30", "--prestop-delay", "0.2", "--native-sidecar", "true")
    sidecar.post("/prestop")
    sent = sidecar.send_signal(signal.SIGTERM)  # the kubelet: the app containers have exited
    assert sidecar.wait(timeout=5) == 0
    assert time.monotonic() - sent < 1
    report = sidecar.report()
    assert (report["outcome"], report["drain_end_source"]) == ("clean", "sidecar_sigterm")


def test_serve_app_port_keeps_readiness_failing_until_the_app_listens(start_sidecar: StartSidecar) -> None:
    # The app container may have no readiness probe of its own: the pod must not join the
    # endpoints before the app listens.
    port = free_port()
    sidecar = start_sidecar("--grace-period", "10", "--prestop-delay", "5", "--app-port", str(port))
    not_ready = sidecar.get("/readyz", params={"verbose": ""})
    assert not_ready.status_code == 503
    assert f"nothing listening on port {port}" in not_ready.text
    app = subprocess.Popen(
        [sys.executable, "-m", "sidecar.demo", "--port", str(port)], stderr=subprocess.PIPE, start_new_session=True
    )
    try:
        wait_until(lambda: sidecar.get("/readyz").status_code == 200, timeout=5, what="readiness once the app listens")
    finally:
        end_session(app)
        assert app.stderr is not None
        app.stderr.close()


def test_serve_native_sidecar_waits_for_its_sigterm_after_the_app_port_drained(
    start_sidecar: StartSidecar, demo_apps: Callable[..., DemoApp]
) -> None:
    # An app that closes its listener and then cleans up has not finished draining: as a native
    # sidecar, the drain ends only at the SIGTERM the kubelet sends once the app has exited.
    app = demo_apps()
    sidecar = start_sidecar("--grace-period", "10", "--prestop-delay", "0.2", "--app-port", str(app.port),
                            "--native-sidecar", "true")  # fmt: skip
    sidecar.post("/prestop")
    app.terminate()
    wait_until(lambda: "connections" in sidecar.get("/status").json().get("drain_end_observed", {}), timeout=5)
    assert sidecar.get("/status").json()["phase"] == "drain"
    sidecar.send_signal(signal.SIGTERM)
    assert sidecar.wait(timeout=5) == 0
    report = sidecar.report()
    assert (report["outcome"], report["drain_end_source"]) == ("clean", "sidecar_sigterm")
    assert set(report["drain_end_observed"]) == {"connections", "sidecar_sigterm"}


def test_serve_native_sidecar_without_its_sigterm_by_the_deadline_reports_timeout(
    start_sidecar: StartSidecar,
) -> None:
    # No SIGTERM means the app containers had not exited: the app was still running.
    sidecar = start_sidecar("--grace-period", "1.5", "--prestop-delay", "0.1", "--report-reserve", "0.5",
                            "--native-sidecar", "true")  # fmt: skip
    sidecar.post("/prestop")
    assert sidecar.wait(timeout=5) == 0
    report = sidecar.report()
    assert (report["outcome"], report["drain_end_source"]) == ("timeout", "deadline")


def test_serve_app_report_does_not_end_the_drain_while_a_more_precise_source_is_watching(
    start_sidecar: StartSidecar, demo_apps: Callable[..., DemoApp]
) -> None:
    app = demo_apps("--latency", "0.0234")  # a command line nothing else on the machine has
    sidecar = start_sidecar("--grace-period", "10", "--prestop-delay", "0.2", "--app-port", str(app.port),
                            "--watch-process", r"0\.0234")  # fmt: skip
    sidecar.post("/prestop")
    sidecar.wait_for_log(lambda line: line.get("msg") == "watching the app process", 2)
    assert sidecar.post("/drain", json={"event": "complete"}).json()["drain_end_accepted"] is False
    assert sidecar.get("/status").json()["phase"] == "drain"
    app.terminate()
    assert sidecar.wait(timeout=5) == 0
    report = sidecar.report()
    assert (report["outcome"], report["drain_end_source"]) == ("clean", "process_exit")
    assert set(report["drain_end_observed"]) >= {"app_report", "process_exit"}


def test_serve_app_report_outranks_the_app_ports_listener(
    start_sidecar: StartSidecar, demo_apps: Callable[..., DemoApp]
) -> None:
    # An app that reports says when it has finished; its listener closing does not end its drain.
    app = demo_apps()
    sidecar = start_sidecar("--grace-period", "10", "--prestop-delay", "0.2", "--app-port", str(app.port))
    sidecar.post("/drain", json={"inflight": 0})
    sidecar.post("/prestop")
    app.terminate()
    wait_until(lambda: "connections" in sidecar.get("/status").json().get("drain_end_observed", {}), timeout=5)
    assert sidecar.get("/status").json()["phase"] == "drain"
    assert sidecar.post("/drain", json={"event": "complete"}).json()["drain_end_accepted"] is True
    assert sidecar.wait(timeout=5) == 0
    report = sidecar.report()
    assert (report["outcome"], report["drain_end_source"]) == ("clean", "app_report")
    assert set(report["drain_end_observed"]) == {"app_report", "connections"}


def test_serve_app_port_reports_keep_alive_connections_still_open_at_the_stop(
    start_sidecar: StartSidecar, demo_apps: Callable[..., DemoApp]
) -> None:
    app = demo_apps()
    sidecar = start_sidecar("--grace-period", "10", "--prestop-delay", "0.5", "--app-port", str(app.port))
    pooled = [socket.create_connection(("127.0.0.1", app.port)) for _ in range(2)]
    try:
        for connection in pooled:  # one request each, then idle in the pool, as a client pool keeps them
            connection.sendall(b"GET / HTTP/1.1\r\nHost: app\r\n\r\n")
            assert connection.recv(1024).startswith(b"HTTP/1.1 200")
        sidecar.send_signal(signal.SIGTERM)
        sidecar.wait_for_log(lambda line: line.get("to") == "drain", 3)
        connections = sidecar.get("/status").json()["connections"]
        assert connections["at_t0"] == 2
        assert connections["at_stop"] == 2
        assert connections["at_stop_opened_before_t0"] == 2
        assert connections["at_drain_end"] is None
        assert sidecar.metric("sidecar_app_connections_at_stop") == 2
        app.terminate()  # the demo drains, then closes its idle keep-alive connections
        assert sidecar.wait(timeout=8) == 0
    finally:
        for connection in pooled:
            connection.close()
    report = sidecar.report()
    assert report["drain_end_source"] == "connections"
    assert report["connections"]["at_drain_end"] == 0


def test_serve_app_port_never_bound_is_named_in_the_log_once(start_sidecar: StartSidecar) -> None:
    # Issue #21: a wrong --app-port (or an app that never binds it) left the log silent, and only
    # /readyz?verbose said why the pod never became ready.
    port = free_port()
    sidecar = start_sidecar("--grace-period", "10", "--prestop-delay", "5", "--app-port", str(port))
    warning = sidecar.wait_for_log(lambda line: line.get("msg") == "nothing listening on the app port", 15)
    assert warning["app_port"] == port
    assert warning["level"] == "warning"
    sidecar.send_signal(signal.SIGTERM)
    assert sidecar.wait(timeout=15) is not None
    assert sum(line.get("msg") == "nothing listening on the app port" for line in sidecar.lines) == 1
