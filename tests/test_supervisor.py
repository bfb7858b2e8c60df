from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sidecar.supervisor import (
    EXIT_NOT_EXECUTABLE,
    EXIT_NOT_FOUND,
    STARTED_GROUPS,
    Child,
    SpawnError,
    exit_status_of,
    kill_started_groups,
)
from tests.e2e.sidecar_process import wait_until

SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]


def has_exited(pid: int) -> bool:
    """True once `pid` (our child) has exited; WNOWAIT leaves it for the reap under test."""
    return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT | os.WNOHANG) is not None


def is_gone(pid: int) -> bool:
    """True once `pid` (not our child) no longer runs: reaped by its new parent, or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rpartition(")")[2].split()[0] == "Z"


@pytest.fixture
def children() -> Iterator[list[Child]]:
    """Every Child a test starts; any still running at the end is killed and reaped."""
    started: list[Child] = []
    yield started
    for child in started:
        if child.pid is not None and child.exit_status is None:
            # Not kill_group alone: the code under test must not be what cleans up after it.
            for kill in (os.killpg, os.kill):
                with contextlib.suppress(ProcessLookupError):
                    kill(child.pid, signal.SIGKILL)
            os.waitpid(child.pid, 0)


def spawn_and_wait(code: str, kill_with: signal.Signals | None = None) -> int:
    pid = os.posix_spawn(sys.executable, [sys.executable, "-c", code], os.environ)
    if kill_with is not None:
        os.kill(pid, kill_with)
    _, wait_status = os.waitpid(pid, 0)
    return wait_status


@pytest.mark.parametrize(
    ("code", "kill_with", "expected"),
    [
        pytest.param("raise SystemExit(0)", None, 0, id="success"),
        pytest.param("raise SystemExit(3)", None, 3, id="exit-code"),
        pytest.param("import time; time.sleep(60)", signal.SIGKILL, 137, id="sigkill"),
        pytest.param("import time; time.sleep(60)", signal.SIGTERM, 143, id="sigterm"),
        pytest.param("import os, signal; os.kill(os.getpid(), signal.SIGUSR2)", None, 140, id="own-signal"),
    ],
)
def test_exit_status_of_gives_the_code_or_128_plus_the_signal(
    code: str, kill_with: signal.Signals | None, expected: int
) -> None:
    assert exit_status_of(spawn_and_wait(code, kill_with)) == expected


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(["shutdown-sidecar-test-no-such-command"], id="not-on-path"),
        pytest.param(["/nonexistent/shutdown-sidecar-test"], id="no-such-path"),
    ],
)
def test_child_start_raises_127_for_a_command_that_is_not_found(argv: list[str]) -> None:
    child = Child(argv, on_exit=lambda status: None)
    with pytest.raises(SpawnError, match="command not found") as raised:
        child.start()
    assert raised.value.exit_status == EXIT_NOT_FOUND == 127
    assert child.pid is None
    assert not child.is_running


@pytest.mark.parametrize("target", [pytest.param("file", id="no-x-bit"), pytest.param("directory", id="directory")])
def test_child_start_raises_126_for_a_command_that_cannot_be_executed(tmp_path: Path, target: str) -> None:
    path = tmp_path / "app"
    if target == "file":
        path.write_text("#!/bin/sh\nexit 0\n")
        path.chmod(0o644)
    else:
        path.mkdir()
    child = Child([str(path)], on_exit=lambda status: None)
    with pytest.raises(SpawnError, match="cannot execute") as raised:
        child.start()
    assert raised.value.exit_status == EXIT_NOT_EXECUTABLE == 126
    assert child.pid is None


def test_child_runs_in_its_own_process_group(children: list[Child]) -> None:
    child = Child(SLEEPER, on_exit=lambda status: None)
    children.append(child)
    assert not child.is_running
    child.start()
    assert child.pid is not None
    assert child.is_running
    assert os.getpgid(child.pid) == child.pid
    assert os.getpgid(child.pid) != os.getpgid(0)


def test_child_send_delivers_the_signal_and_reap_reports_the_status_once(children: list[Child]) -> None:
    statuses: list[int] = []
    child = Child(SLEEPER, on_exit=statuses.append)
    children.append(child)
    child.start()
    pid = child.pid
    assert pid is not None
    child.send(signal.SIGTERM)
    wait_until(lambda: has_exited(pid), 10, what="the child to exit on SIGTERM")
    assert child.exit_status is None, "nothing reaps but reap()"
    child.reap()
    assert statuses == [143]
    assert child.exit_status == 143
    assert not child.is_running
    child.reap()
    child.send(signal.SIGTERM)  # after the exit: a no-op, never a signal to a reused pid
    assert statuses == [143]


def test_child_reap_before_the_exit_reports_nothing(children: list[Child]) -> None:
    statuses: list[int] = []
    child = Child(SLEEPER, on_exit=statuses.append)
    children.append(child)
    child.start()
    child.reap()
    assert statuses == []
    assert child.is_running


def start_with_a_grandchild(children: list[Child], tmp_path: Path, *, then: str) -> tuple[Child, int, list[int]]:
    """A child that starts a sleeping grandchild (in its group), then runs `then`: (the child,
    the grandchild's pid, the statuses reap reports)."""
    grandchild_file = tmp_path / "grandchild"
    code = (
        "import os, subprocess, sys, time\n"
        "grandchild = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        f"open({str(grandchild_file)!r} + '.tmp', 'w').write(str(grandchild.pid))\n"
        f"os.rename({str(grandchild_file)!r} + '.tmp', {str(grandchild_file)!r})  # appears whole\n"
        f"{then}\n"
    )
    statuses: list[int] = []
    child = Child([sys.executable, "-c", code], on_exit=statuses.append)
    children.append(child)
    child.start()
    assert child.pid is not None
    wait_until(grandchild_file.exists, 10, what="the grandchild to start")
    grandchild = int(grandchild_file.read_text())
    assert os.getpgid(grandchild) == child.pid
    return child, grandchild, statuses


def test_child_kill_group_kills_the_child_and_its_descendants(children: list[Child], tmp_path: Path) -> None:
    child, grandchild, statuses = start_with_a_grandchild(children, tmp_path, then="time.sleep(60)")
    pid = child.pid
    assert pid is not None
    child.kill_group()
    wait_until(lambda: has_exited(pid), 10, what="the child to die")
    child.reap()
    assert statuses == [137]
    wait_until(lambda: is_gone(grandchild), 10, what="the grandchild to die")


def test_child_group_left_behind_stays_in_the_watchdogs_last_words_until_killed(
    children: list[Child], tmp_path: Path
) -> None:
    # A shell entrypoint that exits and leaves its server running: the watchdog's last words
    # (kill_started_groups) must still reach that server; once kill_group ran, the group is forgotten.
    child, orphan, statuses = start_with_a_grandchild(children, tmp_path, then="pass")
    pid = child.pid
    assert pid is not None
    try:
        wait_until(lambda: has_exited(pid), 10, what="the child to exit")
        child.reap()
        assert statuses == [0]
        assert pid in STARTED_GROUPS, "the group outlives its leader"
        kill_started_groups()
        wait_until(lambda: is_gone(orphan), 10, what="the orphan to die")
        child.kill_group()
        assert pid not in STARTED_GROUPS
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(orphan, signal.SIGKILL)
