"""Signals to a real process: none ends it without a report. The table is in the README."""

from __future__ import annotations

import os
import signal
import socket
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.sidecar_process import SidecarProcess, wait_until
from tests.faults.test_admin_port import assert_answers

StartSidecar = Callable[..., SidecarProcess]
IGNORED_IN_SERVE = [signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGALRM, signal.SIGPROF, signal.SIGRTMIN + 1]


def test_signals_that_would_end_the_process_are_logged_and_ignored_in_serve_mode(start_sidecar: StartSidecar) -> None:
    sidecar = start_sidecar("--grace-period", "3", "--prestop-delay", "0.2", "--report-reserve", "0.5")
    for signum in IGNORED_IN_SERVE:
        os.kill(sidecar.proc.pid, signum)
    ignored = lambda: len([line for line in sidecar.logs() if line.get("msg") == "signal ignored"])  # noqa: E731
    wait_until(lambda: ignored() == len(IGNORED_IN_SERVE), 5, what="every signal to be logged")
    assert sidecar.proc.poll() is None
    assert_answers(sidecar.port, "GET", "/readyz", 200)
    assert sidecar.get("/status").json()["phase"] == "running"


def test_signals_sigquit_starts_a_shutdown_that_ends_in_a_report(start_sidecar: StartSidecar) -> None:
    sidecar = start_sidecar("--grace-period", "3", "--prestop-delay", "0.2", "--report-reserve", "0.5")
    sidecar.send_signal(signal.SIGQUIT)
    assert sidecar.wait(timeout=5) == 0
    assert sidecar.report()["trigger"] == "signal"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def blocked_signals(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("SigBlk:"):
                return int(line.split()[1], 16)
    return 0


@pytest.mark.timeout(120)
@pytest.mark.parametrize("moment", ["held-at-start", "first-accept"])
def test_signals_a_sigterm_at_start_or_at_the_first_accept_ends_in_a_report(moment: str) -> None:
    for _ in range(3):  # bounded: the race used to be lost 10 times in 10
        port = free_port()
        args = ["serve", "--host", "127.0.0.1", "--port", str(port), "--termination-log", ""]
        process = SidecarProcess([*args, "--grace-period", "1", "--prestop-delay", "0", "--report-reserve", "0.5"])
        try:
            if moment == "held-at-start":
                term_bit = 1 << (signal.SIGTERM - 1)
                wait_until(lambda: blocked_signals(process.proc.pid) & term_bit, 10, interval=0.001)  # noqa: B023
            else:

                def accepts() -> bool:
                    try:
                        socket.create_connection(("127.0.0.1", port), timeout=1).close()  # noqa: B023
                    except OSError:
                        return False
                    return True

                wait_until(accepts, 10, interval=0.0005)
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=10) == 0
            assert process.report()["trigger"] == "signal"
        finally:
            process.close()


APP = """
import signal, sys, time
signal.signal(signal.SIGALRM, lambda *_: print("alarm", flush=True))
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
print("up", flush=True)
time.sleep(30)
"""


def test_signals_in_run_mode_sigalrm_reaches_the_app_and_sigquit_drains_it(tmp_path: Path) -> None:
    out = tmp_path / "app.out"
    argv = ["run", "--host", "127.0.0.1", "--port", "0", "--termination-log", "", "--grace-period", "3"]
    argv += [
        "--prestop-delay",
        "0.2",
        "--report-reserve",
        "0.5",
        "--",
        "sh",
        "-c",
        f"exec {sys.executable} -c '{APP}' > {out}",
    ]
    process = SidecarProcess(argv)
    try:
        app_pid = process.wait_for_log(lambda line: line.get("msg") == "sidecar ready", 10)["app_pid"]
        wait_until(lambda: "up" in out.read_text() if out.exists() else False, 10, what="the app to start")
        process.send_signal(signal.SIGALRM)
        wait_until(lambda: "alarm" in out.read_text(), 5, what="the app to get SIGALRM")
        assert process.proc.poll() is None
        process.send_signal(signal.SIGQUIT)
        assert process.wait(timeout=8) == 0
        report = process.report()
        assert (report["outcome"], report["drain_end_source"]) == ("clean", "process_exit")
        assert not Path(f"/proc/{app_pid}").exists(), "the app outlived its wrapper"
    finally:
        process.close()
