"""The command line as a user meets it: exit status 2 and one line naming the flag, nothing started."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from sidecar.config import setting_specs


def run_sidecar(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sidecar", *args], capture_output=True, text=True, timeout=20, env=env, check=False
    )


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        pytest.param(["--grace-period", "-1"], "--grace-period", id="negative"),
        pytest.param(["--grace-period", "soon"], "--grace-period", id="non-numeric"),
        pytest.param(["--prestop-delay", "nan"], "--prestop-delay", id="nan"),
        pytest.param(["--grace-period", "5", "--prestop-delay", "4"], "--prestop-delay", id="delay-plus-reserve"),
        pytest.param(["--port", "70000"], "--port", id="port-range"),
        pytest.param(["--host", "example.com"], "--host", id="host-name"),
        pytest.param(["--log-format", "xml"], "--log-format", id="log-format"),
        pytest.param(["--pushgateway-url", "ftp://x"], "--pushgateway-url", id="bad-url"),
        pytest.param(["--no-such-flag"], "--no-such-flag", id="unknown-flag"),
    ],
)
def test_cli_bad_setting_exits_2_with_one_line_naming_the_flag(args: list[str], flag: str) -> None:
    result = run_sidecar("serve", "--port", "0", *args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert flag in lines[0]
    assert "sidecar ready" not in result.stderr


def test_cli_bad_environment_value_names_the_variable() -> None:
    result = run_sidecar("serve", env={"SIDECAR_GRACE_PERIOD": "thirty", "PATH": "/usr/bin:/bin"})
    assert result.returncode == 2
    assert "--grace-period (from SIDECAR_GRACE_PERIOD)" in result.stderr


def test_cli_port_in_use_exits_2() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_sidecar("serve", "--host", "127.0.0.1", "--port", str(port))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "--port" in result.stderr
    assert "in use" in result.stderr


def test_cli_help_lists_every_setting_with_its_environment_variable() -> None:
    result = run_sidecar("serve", "--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    for spec in setting_specs():
        assert spec.flag in text
        assert spec.env_var in text


def test_cli_version_prints_the_version() -> None:
    from sidecar import __version__

    result = run_sidecar("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"shutdown-sidecar {__version__}"
