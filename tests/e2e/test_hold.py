"""The auto hold against real processes: a sidecar watching a real app's port, a client sending it
new connections, then quiet; /prestop returns when the quiet window has passed."""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.benchmarks.test_arrivals_benchmark import APP
from tests.e2e.process_tree import end_session
from tests.e2e.sidecar_process import SidecarProcess, wait_until
from tests.e2e.test_run import free_port
from tests.integrations.app_server import AppServer, uvicorn_port

StartSidecar = Callable[..., SidecarProcess]


class OneRequestApp:
    """An app answering one request per connection and closing it first (its side keeps
    TIME_WAIT), in a process of its own."""

    def __init__(self) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-c", APP, str(self.port)], stdout=subprocess.PIPE, text=True, start_new_session=True
        )
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == "listening"

    def terminate(self) -> None:
        self.proc.send_signal(signal.SIGTERM)

    def close(self) -> None:
        end_session(self.proc)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@pytest.fixture
def app() -> Iterator[OneRequestApp]:
    started = OneRequestApp()
    yield started
    started.close()


class ConnectionLoad:
    """New connections to `port` at about `rate` a second, one request each (`Connection: close`:
    the server closes first), from a thread, until stopped."""

    def __init__(self, port: int, rate: float = 50.0) -> None:
        self.port, self.interval = port, 1.0 / rate
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=2) as conn:
                conn.sendall(b"GET / HTTP/1.1\r\nhost: app\r\nconnection: close\r\n\r\n")
                while conn.recv(65536):
                    pass
                self.sent += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


AUTO = ("--grace-period", "10", "--prestop-delay", "auto", "--prestop-delay-min", "0.5", "--prestop-delay-max", "6")


def hold_of(sidecar: SidecarProcess) -> dict[str, object]:
    hold: dict[str, object] = sidecar.report()["hold"]
    return hold


def test_hold_auto_ends_a_quiet_window_after_the_last_arrival(start_sidecar: StartSidecar, app: OneRequestApp) -> None:
    sidecar = start_sidecar(*AUTO, "--app-port", str(app.port))
    load = ConnectionLoad(app.port)  # a new connection every ~10 ms, the server closing each
    try:
        wait_until(lambda: load.sent >= 30, timeout=30, what="traffic before t0")
        with httpx.Client(timeout=10) as client, concurrent.futures.ThreadPoolExecutor() as pool:
            callers = [pool.submit(client.post, sidecar.url("/prestop")) for _ in range(2)]
            time.sleep(1.0)  # traffic goes on after t0: endpoints have not converged yet
            stopped = time.monotonic()
            load.stop()
            responses = [caller.result() for caller in callers]
            released = time.monotonic()
    finally:
        load.stop()
    assert [response.status_code for response in responses] == [200, 200]
    waited = [response.json()["waited_seconds"] for response in responses]
    assert max(waited) - min(waited) < 0.3  # both callers released at the same instant (they started together)
    app.terminate()
    assert sidecar.wait(timeout=10) == 0
    hold = hold_of(sidecar)
    assert hold["mode"] == "auto"
    assert hold["released_by"] == "quiet"
    assert isinstance(hold["arrivals_after_t0"], int)
    assert hold["arrivals_after_t0"] > 3
    window, last = hold["window_seconds"], hold["last_arrival_seconds"]
    assert isinstance(window, float)
    assert isinstance(last, float)
    assert 0.5 <= window < 6
    assert 0.8 < last < 1.5  # the last connection came when the client stopped, ~1 s after t0
    assert hold["duration_seconds"] == pytest.approx(last + window, abs=0.2)
    assert released - stopped < window + 1.0  # not the maximum
    report = sidecar.report()
    assert report["late_connections"] == hold["arrivals_after_t0"]
    assert report["prestop_delay_covered_late_connections"] is True


def test_hold_auto_without_arrivals_before_t0_holds_to_the_maximum(
    start_sidecar: StartSidecar, app: OneRequestApp
) -> None:
    sidecar = start_sidecar(
        "--grace-period", "10", "--prestop-delay", "auto", "--prestop-delay-max", "1.5", "--app-port", str(app.port)
    )
    wait_until(lambda: sidecar.get("/readyz").status_code == 200, timeout=5, what="the app listening")
    response = httpx.post(sidecar.url("/prestop"), timeout=10)
    assert response.status_code == 200
    assert 1.4 < response.json()["waited_seconds"] < 1.8
    app.terminate()
    assert sidecar.wait(timeout=10) == 0
    hold = hold_of(sidecar)
    assert (hold["released_by"], hold["window_seconds"], hold["rate_per_second"]) == ("maximum", None, None)


def test_hold_auto_by_default_without_app_port_warns_once_at_start_and_holds_to_the_maximum(
    start_sidecar: StartSidecar,
) -> None:
    # No --prestop-delay: auto is the default. Nothing counts arrivals, so the operator is told at
    # start-up, before any rollout, what every hold will be.
    sidecar = start_sidecar("--grace-period", "10", "--prestop-delay-max", "1")
    blind = "every hold will last the maximum, 1 s: pass --app-port, or --prestop-delay N for a fixed hold"
    warning = sidecar.wait_for_log(lambda line: line.get("msg") == blind, 5)
    assert "app-port" in warning["reason"]
    assert sidecar.get("/status").json()["phase"] == "running"
    events = httpx.post(sidecar.url("/prestop"), timeout=10)
    assert events.status_code == 200
    assert sidecar.wait(timeout=15) is not None
    assert [line["msg"] for line in sidecar.logs() if line.get("level") == "warning"] == [blind]
    hold = hold_of(sidecar)
    assert (hold["mode"], hold["released_by"], hold["maximum_seconds"]) == ("auto", "maximum", 1.0)
    assert hold["counting"] == warning["reason"]
    assert "lasts its maximum" in str(hold["counting"])


def test_hold_fixed_is_reported_as_fixed(start_sidecar: StartSidecar) -> None:
    sidecar = start_sidecar("--grace-period", "10", "--prestop-delay", "0.3")
    assert httpx.post(sidecar.url("/prestop"), timeout=10).status_code == 200
    assert sidecar.wait(timeout=15) is not None
    hold = hold_of(sidecar)
    assert (hold["mode"], hold["released_by"], hold["maximum_seconds"]) == ("fixed", "fixed", 0.3)
    assert isinstance(hold["duration_seconds"], float)
    assert 0.3 <= hold["duration_seconds"] < 0.4


def test_hold_events_carry_the_auto_hold_at_t0(start_sidecar: StartSidecar, app: OneRequestApp) -> None:
    sidecar = start_sidecar(*AUTO, "--app-port", str(app.port))
    load = ConnectionLoad(app.port)
    try:
        wait_until(lambda: load.sent >= 30, timeout=30, what="traffic before t0")
        with httpx.stream("GET", sidecar.url("/events"), timeout=10) as stream:
            lines = stream.iter_lines()
            next(line for line in lines if line.startswith("data:"))  # the running status
            sidecar.send_signal(signal.SIGTERM)
            data = next(line for line in lines if line.startswith("data:"))
    finally:
        load.stop()
    hold = json.loads(data.removeprefix("data:"))["hold"]
    assert hold["mode"] == "auto"
    assert hold["released_by"] is None  # still holding
    assert hold["maximum_seconds"] == 6
    assert isinstance(hold["window_seconds"], float)
    assert hold["rate_per_second"] > 1
    assert hold["evidence"] == "connections"  # the app reports no requests: the connections set the window


class PooledLoad:
    """Requests at about `rate` a second over `connections` keep-alive connections (an HTTP
    client's pool: a connection is opened again only when the server closed it), one thread each,
    until stopped."""

    def __init__(self, port: int, rate: float = 50.0, connections: int = 3) -> None:
        self.base, self.interval = f"http://127.0.0.1:{port}", connections / rate
        self.sent = 0
        self.last_sent = 0.0  # time.monotonic() when the last request was sent
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run) for _ in range(connections)]
        for thread in self._threads:
            thread.start()

    def _run(self) -> None:
        with httpx.Client(base_url=self.base, timeout=5) as client:
            while not self._stop.wait(self.interval):
                with contextlib.suppress(httpx.HTTPError):
                    self.last_sent = time.monotonic()
                    client.get("/")
                    self.sent += 1

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)


def hold_behind_the_middleware(start_sidecar: StartSidecar, *flags: str) -> tuple[SidecarProcess, float, float]:
    """A real uvicorn serving SidecarMiddleware, which reports each request it starts, and a client
    keeping three connections (so new connections before t0 are three in all and their gaps say
    nothing), sending ~50 requests a second for 2 s before t0 and 1 s after; the auto hold by
    `flags`. Returns the sidecar once it has exited, when its /prestop answered and when the
    client sent its last request."""
    port = free_port()
    sidecar = start_sidecar(*AUTO, "--app-port", str(port), *flags)
    app = AppServer(
        ("uvicorn", "tests.integrations.asgi_app:app", "--host", "127.0.0.1", "--port", str(port)),
        env={"SHUTDOWN_SIDECAR_URL": sidecar.url("")},
    )
    try:
        uvicorn_port(app)
        load = PooledLoad(port)
        try:
            wait_until(lambda: load.sent >= 100, timeout=30, what="2 s of traffic before t0")
            with concurrent.futures.ThreadPoolExecutor() as pool:
                hook = pool.submit(httpx.post, sidecar.url("/prestop"), timeout=10)
                time.sleep(1.0)  # traffic goes on after t0: endpoints have not converged yet
                load.stop()
                stopped = load.last_sent
                response = hook.result(timeout=10)
                released = time.monotonic()
        finally:
            load.stop()
        assert response.status_code == 200
        app.signal(signal.SIGTERM)
        assert sidecar.wait(timeout=15) == 0
    finally:
        app.close()
    return sidecar, released, stopped


def test_hold_auto_follows_the_requests_a_pooled_client_sends_through_the_middleware(
    start_sidecar: StartSidecar,
) -> None:
    # Behind a per-request balancer (--prestop-evidence requests) the window must come from the
    # requests (on connections it is the maximum).
    sidecar, released, stopped = hold_behind_the_middleware(start_sidecar, "--prestop-evidence", "requests")
    hold = hold_of(sidecar)
    assert (hold["mode"], hold["evidence"], hold["released_by"]) == ("auto", "requests", "quiet")
    window, last = hold["window_seconds"], hold["last_arrival_seconds"]
    assert isinstance(window, float)
    assert isinstance(last, float)
    assert isinstance(hold["rate_per_second"], float)
    assert hold["rate_per_second"] > 20  # ~50 requests a second, not 3 connections
    assert window < 1.5  # at 50/s: the 0.5 s minimum, or the longest gap between reports
    assert isinstance(hold["requests_after_t0"], int)
    assert hold["requests_after_t0"] > 20
    assert 0.8 < last < 1.6  # the last request came when the client stopped, ~1 s after t0
    assert hold["duration_seconds"] == pytest.approx(last + window, abs=0.2)
    assert released - stopped < window + 1.0  # a window after the last request, not the maximum (6 s)
    logged = sidecar.wait_for_log(lambda line: line.get("msg") == "hold ended", 0)
    assert (logged["evidence"], logged["released_by"]) == ("requests", "quiet")


def test_hold_auto_by_default_takes_its_window_from_connections_though_the_middleware_reports_requests(
    start_sidecar: StartSidecar,
) -> None:
    # Behind kube-proxy a pooled client's requests say nothing about routing: by default the three
    # connections set the window (the maximum), and the reported requests still restart it.
    sidecar, released, stopped = hold_behind_the_middleware(start_sidecar)
    hold = hold_of(sidecar)
    assert (hold["mode"], hold["evidence"], hold["evidence_mode"]) == ("auto", "connections", "connections")
    window, last = hold["window_seconds"], hold["last_arrival_seconds"]
    assert isinstance(window, float)
    assert isinstance(last, float)
    assert window > 4  # three connections in a few seconds of counting (requests: the 0.5 s minimum)
    assert isinstance(hold["requests_after_t0"], int)
    assert hold["requests_after_t0"] > 20  # still counted after t0
    assert 0.8 < last < 1.6  # the last request restarted the window, ~1 s after t0
    assert hold["duration_seconds"] == pytest.approx(min(last + window, 6.0), abs=0.2)
    assert released - stopped > 3.0  # not released a request window after the client stopped
