"""A simulated container's processes: the exit status in a shell's convention, the environment
without the rehearsal's own SIDECAR_* variables, and a real process started, signalled, SIGKILLed
with its whole session and reaped into its record."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import pytest

from sidecar.simulate.container import (
    TERMINATION_MESSAGE_LIMIT,
    ContainerProcess,
    environment,
    exit_status_of,
    log_tail,
    read_termination_message,
    termination_log_path,
)
from sidecar.simulate.records import ContainerRecord
from tests.simulate.waiting import is_running, wait_until

WAIT_SECONDS = 10.0


def clock() -> float:
    return 42.0


@pytest.mark.parametrize(
    ("returncode", "status"),
    [pytest.param(0, 0, id="ok"), pytest.param(3, 3, id="error"), pytest.param(-9, 137, id="sigkill")],
)
def test_exit_status_of_uses_the_shells_convention(returncode: int, status: int) -> None:
    assert exit_status_of(returncode) == status


def test_environment_drops_the_rehearsals_sidecar_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIDECAR_GRACE_PERIOD", "99")
    monkeypatch.setenv("SIMULATE_TEST_KEPT", "yes")
    env = environment({"SIDECAR_PORT": "9180"})
    assert "SIDECAR_GRACE_PERIOD" not in env
    assert env["SIMULATE_TEST_KEPT"] == "yes"
    assert env["SIDECAR_PORT"] == "9180", "the container's own variables are kept"


def test_environment_drops_the_rehearsals_own_sidecar_url(monkeypatch: pytest.MonkeyPatch) -> None:
    # Each simulated pod has its own sidecar: the one this shell points at is none of theirs.
    monkeypatch.setenv("SHUTDOWN_SIDECAR_URL", "http://127.0.0.1:9180")
    assert "SHUTDOWN_SIDECAR_URL" not in environment({})
    assert environment({"SHUTDOWN_SIDECAR_URL": "http://127.0.0.1:10001"})["SHUTDOWN_SIDECAR_URL"] == (
        "http://127.0.0.1:10001"
    )


def test_read_termination_message_is_capped_like_the_kubelets(tmp_path: Path) -> None:
    path = tmp_path / "app.termination-log"
    assert read_termination_message(path) is None
    path.write_text("x" * (TERMINATION_MESSAGE_LIMIT + 10))
    assert read_termination_message(path) == "x" * TERMINATION_MESSAGE_LIMIT


def test_log_tail_of_a_missing_log_is_empty(tmp_path: Path) -> None:
    assert log_tail(tmp_path / "absent.log") == ""


@pytest.mark.anyio
async def test_container_process_reaps_its_exit_and_termination_message_into_its_record(tmp_path: Path) -> None:
    record = ContainerRecord("app")
    script = f"echo starting; echo done > {termination_log_path(tmp_path, 'app')}; exit 3"
    container = await ContainerProcess.start(["sh", "-c", script], {}, record, tmp_path, clock)
    async with asyncio.timeout(WAIT_SECONDS):
        status = await container.reap()
    assert status == 3
    assert container.exited.is_set()
    assert (record.started_at, record.exited_at, record.exit_status) == (42.0, 42.0, 3)
    assert record.termination_message == "done\n"
    assert container.last_log_line() == "starting"


@pytest.mark.anyio
async def test_container_process_kill_ends_every_process_in_its_session(tmp_path: Path) -> None:
    record = ContainerRecord("app")
    # The main process ignores SIGTERM and has a child in a process group of its own (as a `run`
    # wrapper's app), whose pid it prints.
    script = "import signal, subprocess, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    script += "print(subprocess.Popen(['sleep', '60'], process_group=0).pid, flush=True); time.sleep(60)"
    container = await ContainerProcess.start([sys.executable, "-c", script], {}, record, tmp_path, clock)
    await wait_until(lambda: log_tail(container.log_path).isdigit(), WAIT_SECONDS)
    child = int(log_tail(container.log_path))
    container.send(signal.SIGTERM)
    assert is_running(child)
    container.kill()
    async with asyncio.timeout(WAIT_SECONDS):
        assert await container.reap() == 128 + signal.SIGKILL
    await wait_until(lambda: not is_running(child), WAIT_SECONDS)
