"""The Celery integration on a real `celery worker` (prefork, concurrency 2) with a real Redis
broker next to a real sidecar process: a task in flight at SIGTERM is counted, and the completion
reported once it has finished. Needs Debian's redis-server: under CI=true its absence fails."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sidecar.integrations.celery import warm_shutdown_problem
from tests.e2e.sidecar_process import SidecarProcess, wait_until
from tests.integrations.app_server import AppServer

pytestmark = pytest.mark.celery
WAIT_SECONDS = 20.0


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A throwaway redis-server on a free loopback port, no persistence; killed at the end."""
    binary = shutil.which("redis-server")
    if binary is None:
        if os.environ.get("CI") == "true":
            pytest.fail("redis-server is not installed (.ci/run installs Debian's redis-server)")
        pytest.skip("redis-server is not installed")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def answers() -> bool:
        if server.poll() is not None:
            raise AssertionError(f"redis-server exited ({server.returncode})")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as connection:
                connection.sendall(b"PING\r\n")
                return connection.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    try:
        wait_until(answers, 10, interval=0.02, what="redis-server")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.kill()
        server.wait(timeout=5)


def app_section(sidecar: SidecarProcess) -> dict[str, Any]:
    section: dict[str, Any] = sidecar.get("/status").json()["app"] or {}
    return section


def send_hold(env: dict[str, str], name: str) -> None:
    """Queue `hold(name)` through the broker, from a process of its own (this one stays Celery-free)."""
    code = f"from tests.integrations.celery_app import hold; hold.delay({name!r})"
    subprocess.run([sys.executable, "-c", code], env={**os.environ, **env}, check=True, timeout=WAIT_SECONDS)


def test_celery_task_in_flight_at_sigterm_is_counted_and_completion_reported_when_it_ends(
    redis_url: str, start_sidecar: Callable[..., SidecarProcess], tmp_path: Path
) -> None:
    sidecar = start_sidecar("--grace-period", "15", "--prestop-delay", "0")
    env = {"TEST_BROKER_URL": redis_url, "TEST_HOLD_DIR": str(tmp_path), "SHUTDOWN_SIDECAR_URL": sidecar.url("")}
    args = ["celery", "-A", "tests.integrations.celery_app", "worker", "--pool", "prefork", "-c", "2"]
    worker = AppServer([*args, "--loglevel", "info", "--without-gossip", "--without-mingle"], env)
    try:
        worker.wait_for_output(r"celery@\S+ ready", WAIT_SECONDS)
        # task_time_limit=8s fits the room of 15 - 0 - 1 s: no warning at start.
        assert "warm shutdown may not fit" not in worker.output
        send_hold(env, "long")
        wait_until(lambda: app_section(sidecar).get("inflight") == 1, WAIT_SECONDS, what="the task in flight")
        assert sidecar.post("/prestop").status_code == 200
        worker.signal(signal.SIGTERM)
        worker.wait_for_output(r"Warm shutdown", WAIT_SECONDS)
        status = sidecar.get("/status").json()
        assert (status["phase"], status["drain_end_source"]) == ("drain", None)  # the task holds the drain
        (tmp_path / "long").touch()
        assert worker.wait(WAIT_SECONDS) == 0
        assert sidecar.wait(WAIT_SECONDS) == 0
    finally:
        worker.close()
    report = sidecar.report()
    assert (report["outcome"], report["drain_end_source"]) == ("clean", "app_report")
    assert report["app"]["inflight_at_stop"] == 1
    assert report["app"]["inflight"] == 0
    main = report["app"]["workers"][str(worker.proc.pid)]
    assert main["complete"] is True


ROOM_24 = {"grace_period_seconds": 30, "prestop_delay_seconds": 5, "report_reserve_seconds": 1}


@pytest.mark.parametrize(
    ("task_time_limit", "status", "fits"),
    [
        pytest.param(24.0, ROOM_24, True, id="limit-inside-the-room"),
        pytest.param(25.0, ROOM_24, False, id="limit-past-the-room"),
        pytest.param(None, ROOM_24, False, id="no-limit-waits-forever"),
        pytest.param(None, {}, True, id="an-older-sidecar-says-nothing"),
    ],
)
def test_celery_warm_shutdown_problem_unless_task_time_limit_fits_the_room(
    task_time_limit: float | None, status: dict[str, Any], fits: bool
) -> None:
    assert (warm_shutdown_problem(task_time_limit, status) is None) is fits
