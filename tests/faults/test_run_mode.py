"""run mode with an app that leaves processes behind in its process group: the drain is not clean
while they live, they are SIGKILLed with the group at the deadline, and the report counts them."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import pytest

from sidecar import process_table
from tests.e2e.sidecar_process import SidecarProcess, wait_until
from tests.e2e.test_run import start_run

# The app starts a helper in its own process group (the default for a child), then exits at once
# on SIGTERM; the helper ignores SIGTERM and lives on for `helper_seconds` (argv[2]) after the app.
APP = """
import signal, subprocess, sys, time
helper = (
    "import os, pathlib, signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); app = os.getppid()\\n"
    "while os.getppid() == app: time.sleep(0.01)\\n"
    "time.sleep(float(sys.argv[2])); pathlib.Path(sys.argv[1]).write_text(repr(time.time()))"
)
done = sys.argv[1] + ".done"
worker = subprocess.Popen([sys.executable, "-c", helper, done, sys.argv[2]], stdin=subprocess.DEVNULL,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
open(sys.argv[1] + ".tmp", "w").write(str(worker.pid))
__import__("os").rename(sys.argv[1] + ".tmp", sys.argv[1])
while True: time.sleep(1)
"""


def is_alive(pid: int) -> bool:
    return pid in process_table.members(group=None)


def start_app(processes: list[SidecarProcess], pid_file: Path, helper_seconds: float) -> int:
    sidecar = start_run(
        "--grace-period", "3", "--prestop-delay", "0.2", "--report-reserve", "0.5",
        command=[sys.executable, "-c", APP, str(pid_file), str(helper_seconds)],
    )  # fmt: skip
    processes.append(sidecar)
    return int(wait_until(lambda: pid_file.exists() and pid_file.read_text(), 10, what="the app's helper"))


def test_run_mode_a_helper_ignoring_sigterm_is_killed_with_the_group_at_the_deadline_and_counted(
    processes: list[SidecarProcess], tmp_path: Path
) -> None:
    helper = start_app(processes, tmp_path / "helper.pid", helper_seconds=600)
    sidecar = processes[0]
    sidecar.send_signal(signal.SIGTERM)
    assert sidecar.wait(timeout=10) == 0  # the app's own status: it exited at the stop signal

    report = sidecar.report()
    assert (report["outcome"], report["drain_end_source"]) == ("timeout", "deadline")
    assert report["processes_left_behind"] == 1
    assert report["drain_end"] == pytest.approx(report["deadline"] - 0.5, abs=0.1)
    wait_until(lambda: not is_alive(helper), 2, what="the helper to be gone")


def test_run_mode_the_drain_ends_when_the_last_process_of_the_group_exits(
    processes: list[SidecarProcess], tmp_path: Path
) -> None:
    start_app(processes, tmp_path / "helper.pid", helper_seconds=0.5)
    sidecar = processes[0]
    sidecar.send_signal(signal.SIGTERM)
    assert sidecar.wait(timeout=10) == 0

    report = sidecar.report()
    assert (report["outcome"], report["drain_end_source"]) == ("clean", "process_exit")
    assert report["processes_left_behind"] == 0
    helper_exit = float((tmp_path / "helper.pid.done").read_text())
    assert report["drain_end"] >= helper_exit, "the drain ended before the app's group had finished"
