"""`shutdown-sidecar run -- CMD` with real children, real signals and the demo app on real ports."""

from __future__ import annotations

import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.sidecar_process import SidecarProcess, wait_until

DEMO = [sys.executable, "-m", "sidecar.demo"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_run(*args: str, command: list[str], prefix: list[str] | None = None) -> SidecarProcess:
    argv = ["run", "--host", "127.0.0.1", "--port", "0", "--termination-log", "", *args, "--", *command]
    process = SidecarProcess(argv) if prefix is None else SidecarProcess.wrapped(prefix, argv)
    ready = process.wait_for_log(lambda line: line.get("msg") == "sidecar ready", 10)
    process.port = int(ready["port"])
    return process


def test_run_child_serves_through_the_delay_then_gets_sigterm_and_its_status_is_passed_through(
    processes: list[SidecarProcess],
) -> None:
    app_port = free_port()
    sidecar = start_run(
        "--grace-period", "5", "--prestop-delay", "1", "--app-port", str(app_port),
        command=[*DEMO, "--port", str(app_port), "--latency", "0.01"],
    )  # fmt: skip
    processes.append(sidecar)
    wait_until(lambda: sidecar.get("/readyz").status_code == 200, 5, what="the app port to be listening")

    sidecar.send_signal(signal.SIGTERM)
    sidecar.wait_for_log(lambda line: line.get("to") == "prestop_delay", 2)
    assert sidecar.get("/readyz").status_code == 503
    assert httpx.get(f"http://127.0.0.1:{app_port}/", timeout=2).status_code == 200, "the app must serve on"
    assert sidecar.wait(timeout=8) == 0

    report = sidecar.report()
    stopping = sidecar.wait_for_log(lambda line: line.get("msg") == "demo stopping", 0)
    assert stopping["ts"] >= report["t0"] + 1, "the app was told to stop before the prestop delay ended"
    assert (report["outcome"], report["drain_end_source"]) == ("clean", "process_exit")
    assert report["app_exit_status"] == 0


def test_run_sigint_after_prestop_is_the_kubelets_stop_signal_and_the_drain_ends_at_the_apps_exit(
    processes: list[SidecarProcess],
) -> None:
    # lifecycle.stopSignal: SIGINT on the wrapper's container: the kubelet calls the preStop hook
    # (/prestop), then sends SIGINT. That is no second Ctrl-C: the app must get its whole drain.
    child = (
        "import signal, sys, time\n"
        "def stop(*_): time.sleep(0.5); sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, stop)\n"
        "while True: time.sleep(1)\n"
    )
    sidecar = start_run("--grace-period", "5", "--prestop-delay", "0.3", command=[sys.executable, "-c", child])
    processes.append(sidecar)
    wait_until(lambda: sidecar.get("/readyz").status_code == 200, 5, what="the app to start")

    assert sidecar.get("/prestop").status_code == 200  # the kubelet's httpGet hook
    sidecar.send_signal(signal.SIGINT)
    received = sidecar.wait_for_log(lambda line: line.get("msg") == "signal received", 2)
    assert received["phase"] == "drain", "SIGINT must arrive while the app drains, or this proves nothing"
    assert sidecar.wait(timeout=5) == 0

    report = sidecar.report()
    assert (report["trigger"], report["outcome"], report["drain_end_source"]) == ("prestop", "clean", "process_exit")
    assert (report["stop_signal"], report["app_exit_status"]) == ("SIGTERM", 0)


def test_run_child_that_overruns_is_killed_at_deadline_minus_reserve(processes: list[SidecarProcess]) -> None:
    sidecar = start_run(
        "--grace-period", "2", "--prestop-delay", "0.2", "--report-reserve", "0.5",
        command=[*DEMO, "--port", "0", "--on-sigterm", "ignore"],
    )  # fmt: skip
    processes.append(sidecar)
    sidecar.wait_for_log(lambda line: line.get("msg") == "demo listening", 5)
    sidecar.send_signal(signal.SIGTERM)

    assert sidecar.wait(timeout=5) == 137
    report = sidecar.report()
    assert (report["outcome"], report["drain_end_source"]) == ("timeout", "deadline")
    assert report["drain_end"] == pytest.approx(report["deadline"] - 0.5, abs=0.05)
    assert report["app_exit_status"] == 137


def shell_around_the_demo(app_port: int, *demo_args: str) -> list[str]:
    """A shell entrypoint that starts the server without `exec`: at its stop signal the shell dies
    (no trap) and the server, left in the child's process group, runs on."""
    demo = " ".join([*DEMO, "--port", str(app_port), *demo_args])
    return ["sh", "-c", f"{demo} & wait"]


def test_run_child_whose_group_runs_on_is_not_finished_until_the_group_is(processes: list[SidecarProcess]) -> None:
    sidecar = start_run("--grace-period", "5", "--prestop-delay", "0.2", command=shell_around_the_demo(free_port()))
    processes.append(sidecar)
    sidecar.wait_for_log(lambda line: line.get("msg") == "demo listening", 5)
    sidecar.send_signal(signal.SIGTERM)
    assert sidecar.wait(timeout=8) == 128 + signal.SIGTERM  # the shell's status: it died of the signal
    report = sidecar.report()
    # The server got the stop signal too (through its group) and drained: then the drain ended.
    stopping = sidecar.wait_for_log(lambda line: line.get("msg") == "demo stopping", 0)
    assert (report["outcome"], report["drain_end_source"]) == ("clean", "process_exit")
    assert report["drain_end"] > stopping["ts"]
    assert any("before the rest of its group" in error for error in report["errors"])


def test_run_child_whose_group_outlives_the_deadline_is_a_timeout(processes: list[SidecarProcess]) -> None:
    command = shell_around_the_demo(free_port(), "--on-sigterm", "ignore")
    sidecar = start_run("--grace-period", "2", "--prestop-delay", "0.2", "--report-reserve", "0.5", command=command)
    processes.append(sidecar)
    server = sidecar.wait_for_log(lambda line: line.get("msg") == "demo listening", 5)
    sidecar.send_signal(signal.SIGTERM)
    assert sidecar.wait(timeout=5) == 128 + signal.SIGTERM
    report = sidecar.report()
    assert (report["outcome"], report["drain_end_source"]) == ("timeout", "deadline")
    # SIGKILLed with its group at the drain deadline, as the kubelet would have at the grace period's end.
    wait_until(lambda: state_of(int(server["pid"])) in (None, "Z"), 2, what="the server to be killed")


def test_run_child_that_exits_on_its_own_is_reported_as_app_exit_with_its_status(
    processes: list[SidecarProcess],
) -> None:
    sidecar = start_run(command=[sys.executable, "-c", "import time, sys; time.sleep(0.5); sys.exit(3)"])
    processes.append(sidecar)
    assert sidecar.wait(timeout=5) == 3
    report = sidecar.report()
    assert (report["outcome"], report["trigger"], report["drain_end_source"]) == (
        "app_exit",
        "app_exit",
        "process_exit",
    )


def exits_on_its_own_when(flag: Path, status: int) -> list[str]:
    """An app that exits with `status` once `flag` exists, whatever signal it got or did not get."""
    script = f"import os, sys, time\nwhile not os.path.exists({str(flag)!r}): time.sleep(0.01)\nsys.exit({status})\n"
    return [sys.executable, "-c", script]


def series_value(exposition: str, series: str) -> float:
    """One series' value in a Prometheus text exposition (one scrape: --linger ends at the first)."""
    for line in exposition.splitlines():
        name, _, value = line.rpartition(" ")
        if name == series:
            return float(value)
    raise AssertionError(f"no series {series}")


def assert_exited_during_the_hold(report: dict[str, Any], hold_seconds: float) -> None:
    """The report of an app that exited on its own during the hold: app_exit, said when and what
    it means, and no drain (no drain phase times, no drain end, no margin)."""
    assert (report["outcome"], report["drain_end_source"]) == ("app_exit", "process_exit")
    reason = report["outcome_reason"]
    assert "during the prestop hold, before its stop signal" in reason
    assert "requests still routed to the pod" in reason
    exited = re.search(r"exited on its own ([0-9.]+) s after t0", reason)
    assert exited is not None, reason
    assert float(exited[1]) == pytest.approx(report["drain_end_observed"]["process_exit"], abs=0.01)
    assert 0 < float(exited[1]) < hold_seconds
    assert report["phases"]["drain"] == {"start": None, "end": None, "duration_seconds": None}
    assert report["phases"]["prestop_delay"]["duration_seconds"] == pytest.approx(hold_seconds, abs=0.3)
    assert (report["drain_end"], report["margin_seconds"]) == (None, None)


def test_run_child_that_exits_on_its_own_during_the_hold_is_app_exit_not_a_clean_drain(
    processes: list[SidecarProcess], tmp_path: Path
) -> None:
    flag = tmp_path / "exit-now"
    sidecar = start_run(
        "--grace-period", "6", "--prestop-delay", "1.5", "--linger", "5",
        command=exits_on_its_own_when(flag, 4),
    )  # fmt: skip
    processes.append(sidecar)
    wait_until(lambda: sidecar.get("/readyz").status_code == 200, 5, what="the app to start")

    sidecar.send_signal(signal.SIGTERM)
    sidecar.wait_for_log(lambda line: line.get("to") == "prestop_delay", 2)
    flag.touch()  # the app goes, untold: the wrapper sends the stop signal only when the hold ends
    sidecar.wait_for_log(lambda line: line.get("msg") == "app exited", 2)
    assert sidecar.get("/status").json()["phase"] == "prestop_delay", "the app must exit during the hold"
    sidecar.wait_for_log(lambda line: line.get("msg") == "shutdown report", 5)
    metrics = sidecar.get("/metrics").text
    assert sidecar.wait(timeout=8) == 4

    report = sidecar.report()
    assert report["trigger"] == "signal"
    assert_exited_during_the_hold(report, 1.5)
    assert (report["stop_signal"], report["app_exit_status"]) == (None, 4)
    # The metrics say the same: an app_exit, no drain duration observed, no margin.
    assert series_value(metrics, 'sidecar_shutdowns_total{outcome="app_exit"}') == 1
    assert series_value(metrics, 'sidecar_shutdowns_total{outcome="clean"}') == 0
    assert series_value(metrics, 'sidecar_shutdown_phase_duration_seconds_count{phase="drain"}') == 0
    assert series_value(metrics, 'sidecar_shutdown_phase_duration_seconds_count{phase="prestop_delay"}') == 1
    assert math.isnan(series_value(metrics, "sidecar_shutdown_margin_seconds"))


def test_run_forwards_hup_usr1_usr2_and_winch_to_the_child(processes: list[SidecarProcess], tmp_path: Path) -> None:
    seen = tmp_path / "seen"
    child = (
        "import signal, sys, time\n"
        "def note(sig, _):\n"
        f"    open({str(seen)!r}, 'a').write(signal.Signals(sig).name + '\\n')\n"
        "for s in (signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGWINCH): signal.signal(s, note)\n"
        f"open({str(seen)!r}, 'a').write('ready\\n')\n"
        "while True: time.sleep(1)\n"
    )
    sidecar = start_run("--grace-period", "2", "--prestop-delay", "0.1", command=[sys.executable, "-c", child])
    processes.append(sidecar)
    wait_until(lambda: seen.exists() and "ready" in seen.read_text(), 5, what="the child to start")
    names = ["SIGHUP", "SIGUSR1", "SIGUSR2", "SIGWINCH"]
    for name in names:
        sidecar.send_signal(signal.Signals[name])
        wait_until(lambda: name in seen.read_text(), 3, what=f"{name} to reach the child")  # noqa: B023
    assert seen.read_text().split() == ["ready", *names]
    assert sidecar.get("/status").json()["phase"] == "running", "a forwarded signal must not start a shutdown"
    sidecar.send_signal(signal.SIGTERM)
    assert sidecar.wait(timeout=5) == 143


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare(1) for a PID namespace")
def test_run_as_pid_1_reaps_orphaned_grandchildren(processes: list[SidecarProcess]) -> None:
    # The subshell forks `sleep 0.3` and exits at once: the sleep is orphaned, re-parented to PID 1
    # (the wrapper), and must be reaped when it exits or it stays a zombie.
    sidecar = start_run(
        "--grace-period", "2", "--prestop-delay", "0.1",
        command=["sh", "-c", "(sleep 0.3 &); exec sleep 30"],
        prefix=["unshare", "--pid", "--fork", "--mount-proc", "--kill-child"],
    )  # fmt: skip
    processes.append(sidecar)
    wrapper = wait_until(lambda: children_of(sidecar.proc.pid), 5, what="the wrapper process")[0]

    def orphan_state() -> str | None:
        for pid in children_of(wrapper):
            if command_of(pid) == "sleep 0.3":
                return state_of(pid)
        return "gone"

    wait_until(lambda: orphan_state() == "gone", 5, what="the orphan to be reaped (not left a zombie)")
    os.kill(wrapper, signal.SIGTERM)  # to PID 1 itself: unshare does not pass signals on
    assert sidecar.wait(timeout=5) == 143  # `sleep` died of the stop signal; unshare passes the status on


def children_of(pid: int) -> list[int]:
    result = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True, check=False)
    return [int(field) for field in result.stdout.split()]


def command_of(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


def state_of(pid: int) -> str | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("State:"):
                return line.split()[1]
    except OSError:
        return None
    return None


@pytest.mark.parametrize(
    ("name", "mode", "status"),
    [
        pytest.param("no-such-command-xyz", None, 127, id="not-found"),
        pytest.param("plain-file", 0o644, 126, id="not-executable"),
        pytest.param("not-a-binary", 0o755, 126, id="exec-format-error"),
    ],
)
def test_run_command_that_cannot_start_exits_127_or_126_with_one_line(
    tmp_path: Path, name: str, mode: int | None, status: int
) -> None:
    command = [name]
    if mode is not None:
        path = tmp_path / name
        path.write_bytes(b"\x00\x01 not a program")
        path.chmod(mode)
        command = [str(path)]
    result = subprocess.run(
        [sys.executable, "-m", "sidecar", "run", "--port", "0", "--termination-log", "", "--", *command],
        capture_output=True, text=True, timeout=20, check=False,
    )  # fmt: skip
    assert result.returncode == status
    errors = [line for line in result.stderr.splitlines() if '"level":"error"' in line]
    assert len(errors) == 1
    assert command[0] in errors[0]


def test_run_without_a_command_exits_2() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "sidecar", "run", "--"], capture_output=True, text=True, timeout=20, check=False
    )
    assert result.returncode == 2
    assert "command" in result.stderr
