"""Configuration that used to pass validation and then fail at shutdown: now refused at start with
exit status 2 and one line, or made to end in a report."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.e2e.sidecar_process import SidecarProcess
from tests.faults.test_admin_port import assert_answers

StartSidecar = Callable[..., SidecarProcess]


@pytest.mark.parametrize(
    ("args", "env", "flag"),
    [
        pytest.param(["--watch-process", "app(["], {}, "--watch-process", id="bad-regex"),
        pytest.param(["--report-reserve", "0"], {}, "--report-reserve", id="no-report-reserve"),
        pytest.param(["--report-reserve", "0.005"], {}, "--report-reserve", id="report-reserve-5ms"),
        pytest.param(["--grace-period", "1e10"], {}, "--grace-period", id="grace-1e10"),
        pytest.param([], {"SIDECAR_ADMIN_TOKEN": "s\u00e9cret"}, "--admin-token", id="non-ascii-token"),
    ],
)
def test_configuration_that_would_fail_at_shutdown_exits_2_at_start_with_one_line(
    args: list[str], env: dict[str, str], flag: str
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "sidecar", "serve", "--port", "0", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env={**env, "PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert flag in lines[0]


def test_configuration_smallest_report_reserve_still_ends_in_a_report(start_sidecar: StartSidecar) -> None:
    sidecar = start_sidecar("--grace-period", "1", "--prestop-delay", "0.2", "--report-reserve", "0.1")
    sidecar.send_signal(signal.SIGTERM)
    assert sidecar.wait(timeout=5) == 0
    assert sidecar.report()["drain_end_source"] == "deadline"


BACKTRACKING_PATTERN = "zq7(a+)+$"


@pytest.fixture
def backtracking_bait() -> Iterator[None]:
    """A process whose command line makes BACKTRACKING_PATTERN backtrack for minutes. The pattern
    starts with a token no other process carries: `(a+)+$` alone matched any command line ending in
    `a` (other test workers' processes, say), and the watch then followed that process instead."""
    bait = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "zq7" + "a" * 40 + "!"])
    yield
    bait.kill()
    bait.wait()


@pytest.mark.timeout(60)
@pytest.mark.usefixtures("backtracking_bait")
def test_configuration_backtracking_pattern_does_not_block_probes_and_the_report_names_it(
    start_sidecar: StartSidecar,
) -> None:
    sidecar = start_sidecar("--grace-period", "4", "--prestop-delay", "1", "--watch-process", BACKTRACKING_PATTERN)
    sidecar.send_signal(signal.SIGTERM)
    sidecar.wait_for_log(lambda line: line.get("to") == "prestop_delay", 5)
    for _ in range(5):
        assert_answers(sidecar.port, "GET", "/livez", 200)
        assert_answers(sidecar.port, "GET", "/readyz", 503)
    assert sidecar.wait(timeout=10) == 0
    report = sidecar.report()
    # The watch that never answered observed nothing, and no other source watches: unknown, not
    # timeout (since #20 a watch that is unavailable no longer holds the outcome to `timeout`).
    assert report["outcome"] == "unknown"
    assert any("took over" in error for error in report["errors"]), report["errors"]


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        pytest.param("", "it is a directory", id="a-directory"),
        pytest.param("missing/report", "its directory {tmp}/missing does not exist", id="missing-directory"),
        pytest.param("file/report", "{tmp}/file is not a directory", id="under-a-file"),
    ],
)
def test_configuration_unwritable_termination_log_is_named_at_start_in_one_warning(
    start_sidecar: StartSidecar, tmp_path: Path, name: str, reason: str
) -> None:
    (tmp_path / "file").write_text("")
    path = str(tmp_path / name) if name else str(tmp_path)
    # A fixed hold: the default, auto, warns at start too without --app-port.
    sidecar = start_sidecar("--termination-log", path, "--prestop-delay", "5")
    warnings = [line for line in sidecar.logs() if line["level"] == "warning"]
    assert [(line["msg"], line["path"], line["reason"]) for line in warnings] == [
        ("termination log not writable: the report will not be written there", path, reason.format(tmp=tmp_path))
    ]


def test_configuration_writable_termination_log_gets_no_warning(start_sidecar: StartSidecar, tmp_path: Path) -> None:
    sidecar = start_sidecar("--termination-log", str(tmp_path / "report"), "--prestop-delay", "5")
    assert [line for line in sidecar.logs() if line["level"] == "warning"] == []
    assert not (tmp_path / "report").exists(), "checked without writing: a file there may hold the last report"
