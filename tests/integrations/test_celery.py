"""The Celery integration on a real `celery worker` (prefork, solo and threads pools) with a real
Redis broker next to a real sidecar process: tasks in flight at SIGTERM are counted, in the process
that runs them, and the completion reported once they have finished. Needs Debian's redis-server:
under CI=true its absence fails."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sidecar.integrations.celery import warm_shutdown_problem
from tests.e2e.sidecar_process import SidecarProcess, wait_until
from tests.integrations.app_server import AppServer

pytestmark = pytest.mark.celery
WAIT_SECONDS = 20.0


def app_section(sidecar: SidecarProcess) -> dict[str, Any]:
    section: dict[str, Any] = sidecar.get("/status").json()["app"] or {}
    return section


def send_hold(env: dict[str, str], *names: str) -> None:
    """Queue `hold(name)` for each name through the broker, from a process of its own (this one
    stays Celery-free)."""
    code = f"from tests.integrations.celery_app import hold; [hold.delay(name) for name in {names!r}]"
    subprocess.run([sys.executable, "-c", code], env={**os.environ, **env}, check=True, timeout=WAIT_SECONDS)


def parent_pid(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1])


@dataclasses.dataclass(frozen=True)
class WorkerPool:
    name: str
    args: tuple[str, ...]
    tasks: int  # held at once


POOLS = [
    # Each child runs one task and counts it under its own PID; the main process says `complete`.
    pytest.param(WorkerPool("prefork", ("-c", "2"), tasks=2), id="prefork"),
    # The main process runs the tasks and counts them: one at a time (solo), or two at once in its
    # threads, one count under a lock.
    pytest.param(WorkerPool("solo", (), tasks=1), id="solo"),
    pytest.param(WorkerPool("threads", ("-c", "2"), tasks=2), id="threads"),
]


@pytest.mark.parametrize("pool", POOLS)
def test_celery_tasks_in_flight_at_sigterm_are_counted_and_completion_reported_when_they_end(
    pool: WorkerPool, redis_url: str, start_sidecar: Callable[..., SidecarProcess], tmp_path: Path
) -> None:
    sidecar = start_sidecar("--grace-period", "15", "--prestop-delay", "0")
    env = {"TEST_BROKER_URL": redis_url, "TEST_HOLD_DIR": str(tmp_path), "SHUTDOWN_SIDECAR_URL": sidecar.url("")}
    args = ["celery", "-A", "tests.integrations.celery_app", "worker", "--pool", pool.name, *pool.args]
    worker = AppServer([*args, "--loglevel", "info", "--without-gossip", "--without-mingle"], env)
    try:
        worker.wait_for_output(r"celery@\S+ ready", WAIT_SECONDS)
        # task_time_limit=8s fits the room of 15 - 0 - 1 s: no warning at start.
        assert "warm shutdown may not fit" not in worker.output
        held = [f"task-{number}" for number in range(pool.tasks)]
        send_hold(env, *held)

        def section_with_all_in_flight() -> dict[str, Any] | None:
            section = app_section(sidecar)
            return section if section.get("inflight") == pool.tasks else None

        section = wait_until(section_with_all_in_flight, WAIT_SECONDS, what="the tasks in flight")
        counted = {int(pid): entry["inflight"] for pid, entry in section["workers"].items() if entry["inflight"]}
        if pool.name == "prefork":
            assert sorted(counted.values()) == [1, 1]
            assert {parent_pid(pid) for pid in counted} == {worker.proc.pid}
        else:
            assert counted == {worker.proc.pid: pool.tasks}
        assert sidecar.post("/prestop").status_code == 200
        worker.signal(signal.SIGTERM)
        worker.wait_for_output(r"Warm shutdown", WAIT_SECONDS)
        while held:
            status = sidecar.get("/status").json()
            assert (status["phase"], status["drain_end_source"]) == ("drain", None)  # a task holds the drain
            (tmp_path / held.pop()).touch()
            if held:
                wait_until(lambda: app_section(sidecar).get("inflight") == len(held), WAIT_SECONDS, what="one ended")
        assert worker.wait(WAIT_SECONDS) == 0
        assert sidecar.wait(WAIT_SECONDS) == 0
    finally:
        worker.close()
    report = sidecar.report()
    assert (report["outcome"], report["drain_end_source"]) == ("clean", "app_report")
    assert report["app"]["inflight_at_stop"] == pool.tasks
    assert report["app"]["inflight"] == 0
    workers = report["app"]["workers"]
    assert workers[str(worker.proc.pid)]["complete"] is True
    if pool.name != "prefork":
        assert list(workers) == [str(worker.proc.pid)]  # no process but the main one reported


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
