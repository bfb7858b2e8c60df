"""The gunicorn config module on a real gunicorn (several workers, sync and gthread) next to a real
sidecar process: each worker reports on its own, the sidecar sums them and ends the drain only when
every worker has finished."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sidecar.integrations import gunicorn as config
from tests.e2e.sidecar_process import SidecarProcess, wait_until
from tests.integrations.app_server import AppServer

WAIT_SECONDS = 15.0
StartGunicorn = Callable[..., AppServer]


@pytest.fixture
def start_gunicorn(tmp_path: Path) -> Iterator[StartGunicorn]:
    started: list[AppServer] = []

    def start(sidecar_url: str, *args: str) -> AppServer:
        command = ["gunicorn", "-c", "python:sidecar.integrations.gunicorn", "--no-control-socket"]
        command += ["-b", "127.0.0.1:0", *args, "tests.integrations.wsgi_app:app"]
        server = AppServer(command, {"SHUTDOWN_SIDECAR_URL": sidecar_url, "TEST_HOLD_DIR": str(tmp_path)})
        started.append(server)
        return server

    yield start
    for server in started:
        server.close()


def gunicorn_url(server: AppServer) -> str:
    return server.wait_for_output(r"Listening at: (http://127\.0\.0\.1:\d+)").group(1)


def workers(sidecar: SidecarProcess) -> dict[str, dict[str, Any]]:
    section = sidecar.get("/status").json()["app"] or {}
    found: dict[str, dict[str, Any]] = section.get("workers", {})
    return found


def inflight(sidecar: SidecarProcess) -> int | None:
    section = sidecar.get("/status").json()["app"] or {}
    count: int | None = section.get("inflight")
    return count


def hold(url: str, name: str) -> threading.Thread:
    """A request in flight until the test creates the file `name` (each on a connection of its own);
    one cut by a killed worker ends quietly."""

    def get() -> None:
        with contextlib.suppress(httpx.TransportError):
            httpx.get(f"{url}/hold/{name}", timeout=WAIT_SECONDS)

    thread = threading.Thread(target=get)
    thread.start()
    return thread


@pytest.mark.parametrize("worker_class", ["sync", "gthread"])
def test_gunicorn_workers_are_summed_and_the_drain_ends_when_every_worker_has_finished(
    worker_class: str, start_sidecar: Callable[..., SidecarProcess], start_gunicorn: StartGunicorn, tmp_path: Path
) -> None:
    sidecar = start_sidecar("--grace-period", "15", "--prestop-delay", "1")
    app = start_gunicorn(sidecar.url(""), "-w", "2", "-k", worker_class, "--threads", "4", "--graceful-timeout", "10")
    url = gunicorn_url(app)
    wait_until(lambda: len(workers(sidecar)) == 2, WAIT_SECONDS, what="both workers said they are here")
    # Both may land in one gthread worker: 4 threads leave it room for the requests below.
    requests = [hold(url, "a"), hold(url, "b")]
    wait_until(lambda: inflight(sidecar) == 2, WAIT_SECONDS, what="2 in flight, summed over workers")
    # Each worker counts the requests it starts, for the auto hold.
    started = "sidecar_app_requests_started_total"
    wait_until(lambda: sidecar.metric(started) == 2, WAIT_SECONDS, what="2 requests started, over workers")

    if worker_class == "gthread":  # a sync worker never keeps a connection (and both are busy)
        with httpx.Client(base_url=url, timeout=WAIT_SECONDS) as client:
            assert client.get("/").headers.get("connection") != "close"  # kept alive before t0
            answers: dict[str, httpx.Response] = {}
            hook = threading.Thread(target=lambda: answers.setdefault("prestop", sidecar.post("/prestop")))
            hook.start()
            # From t0 the workers' keepalive is 0: each answer closes its connection.
            wait_until(lambda: client.get("/").headers.get("connection") == "close", WAIT_SECONDS, what="close")
            hook.join(WAIT_SECONDS)
        assert answers["prestop"].status_code == 200
    else:
        assert sidecar.post("/prestop").status_code == 200

    app.signal(signal.SIGTERM)  # the kubelet's stop signal, after the hook returned
    (tmp_path / "a").touch()
    wait_until(lambda: any(w["complete"] for w in workers(sidecar).values()), WAIT_SECONDS, what="a worker done")
    status = sidecar.get("/status").json()
    assert (status["phase"], status["drain_end_source"]) == ("drain", None)  # "b" still holds its worker
    (tmp_path / "b").touch()
    assert app.wait(WAIT_SECONDS) == 0
    assert sidecar.wait(WAIT_SECONDS) == 0
    for request in requests:
        request.join(WAIT_SECONDS)
    report = sidecar.report()
    assert (report["outcome"], report["drain_end_source"]) == ("clean", "app_report")
    assert report["app"]["inflight_peak"] >= 2
    assert len(report["app"]["workers"]) == 2
    assert all(worker["complete"] for worker in report["app"]["workers"].values())


def test_gunicorn_worker_killed_with_sigkill_does_not_hold_the_drain_open(
    start_sidecar: Callable[..., SidecarProcess], start_gunicorn: StartGunicorn, tmp_path: Path
) -> None:
    sidecar = start_sidecar("--grace-period", "15", "--prestop-delay", "0")
    app = start_gunicorn(sidecar.url(""), "-w", "2", "-k", "sync", "--graceful-timeout", "10")
    url = gunicorn_url(app)
    requests = [hold(url, "a"), hold(url, "b")]  # one in each sync worker
    wait_until(lambda: inflight(sidecar) == 2, WAIT_SECONDS, what="2 in flight")
    killed, survivor = sorted(workers(sidecar))
    assert sidecar.post("/prestop").status_code == 200
    app.signal(signal.SIGTERM)
    app.wait_for_output(r"Handling signal: term")
    os.kill(int(killed), signal.SIGKILL)  # the OOM killer's way: no word from the worker
    wait_until(lambda: workers(sidecar)[killed]["exited"], WAIT_SECONDS, what="the killed worker seen gone")
    assert sidecar.get("/status").json()["drain_end_source"] is None  # the survivor still serves
    (tmp_path / "a").touch()
    (tmp_path / "b").touch()
    assert sidecar.wait(WAIT_SECONDS) == 0
    assert app.wait(WAIT_SECONDS) == 0
    for request in requests:
        request.join(WAIT_SECONDS)
    report = sidecar.report()
    assert (report["outcome"], report["drain_end_source"]) == ("clean", "app_report")
    assert report["app"]["workers"][killed]["complete"] is False
    assert report["app"]["workers"][survivor]["complete"] is True


def test_gunicorn_warns_at_start_when_graceful_timeout_cannot_fit(
    start_sidecar: Callable[..., SidecarProcess], start_gunicorn: StartGunicorn
) -> None:
    sidecar = start_sidecar("--grace-period", "10", "--prestop-delay", "4")
    app = start_gunicorn(sidecar.url(""), "-w", "1", "--graceful-timeout", "6")
    app.wait_for_output(r"graceful_timeout does not fit the sidecar's budget: graceful_timeout=6s room=5s")


class FakeLog:
    def __init__(self) -> None:
        self.warnings: list[str] = []

    def info(self, msg: str, *args: object) -> None:
        pass

    def warning(self, msg: str, *args: object) -> None:
        self.warnings.append(msg % args)


class FakeConfig:
    graceful_timeout = 30

    def set(self, name: str, value: object) -> None:
        raise AssertionError("not expected")


class FakeArbiter:
    def __init__(self) -> None:
        self.log = FakeLog()
        self.cfg = FakeConfig()


def test_gunicorn_on_starting_says_once_that_the_sidecar_is_unreachable_and_goes_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    monkeypatch.setenv("SHUTDOWN_SIDECAR_URL", f"http://127.0.0.1:{port}")
    arbiter = FakeArbiter()
    config.on_starting(arbiter)
    assert len(arbiter.log.warnings) == 1
    assert arbiter.log.warnings[0].startswith("sidecar status unavailable; graceful_timeout not checked")


def test_gunicorn_on_starting_logs_the_sidecar_url_without_its_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHUTDOWN_SIDECAR_URL", "http://admin:s3cret@sidecar.invalid:9180")
    arbiter = FakeArbiter()
    config.on_starting(arbiter)
    [warning] = arbiter.log.warnings
    assert "url=http://***@sidecar.invalid:9180/status " in warning
    assert "s3cret" not in warning


@pytest.mark.parametrize(
    ("graceful_timeout", "status", "fits"),
    [
        pytest.param(24, {"grace_period_seconds": 30, "prestop_delay_seconds": 5, "report_reserve_seconds": 1}, True),
        pytest.param(25, {"grace_period_seconds": 30, "prestop_delay_seconds": 5, "report_reserve_seconds": 1}, False),
        pytest.param(99, {}, True, id="an-older-sidecar-says-nothing"),
    ],
)
def test_gunicorn_budget_problem_only_when_graceful_timeout_exceeds_the_room(
    graceful_timeout: float, status: dict[str, Any], fits: bool
) -> None:
    assert (config.budget_problem(graceful_timeout, status) is None) is fits
