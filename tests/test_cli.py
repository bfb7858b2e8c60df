"""The command line in-process: parsing and refusals only, nothing is started here (the real
processes are in tests/e2e/test_cli.py)."""

from __future__ import annotations

import argparse
import os
import sys
import tomllib
from collections.abc import Sequence
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from sidecar import __version__
from sidecar.cli import EXIT_USAGE, SERVER_MODULES, build_parser, main
from sidecar.config import setting_specs
from sidecar.signals import SHUTDOWN_SIGNALS
from sidecar.supervisor import FORWARDED_SIGNALS


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No SIDECAR_* or OTEL_* variable of the machine's may decide a test."""
    for name in os.environ:
        if name.startswith(("SIDECAR_", "OTEL_")):
            monkeypatch.delenv(name)


def exit_status(argv: Sequence[str]) -> int:
    """main's return value, or the status of the SystemExit argparse raises."""
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else -1


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    [action] = [action for action in parser._actions if isinstance(action, argparse._SubParsersAction)]
    return dict(action.choices)


def test_cli_parser_has_serve_run_simulate_and_report() -> None:
    parser = build_parser()
    assert set(subcommands(parser)) == {"serve", "run", "simulate", "report"}
    assert parser.parse_args(["serve"]).mode == "serve"
    assert parser.parse_args(["run", "--", "app", "--flag"]).command[-2:] == ["app", "--flag"]


@pytest.mark.parametrize("mode", ["serve", "run"])
def test_cli_help_names_every_setting_flag_and_environment_variable(
    mode: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert exit_status([mode, "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    for spec in setting_specs():
        assert spec.flag in text
        assert f"[env {spec.env_var};" in text


def test_cli_run_help_names_the_signals_that_start_a_shutdown_and_those_forwarded(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert exit_status(["run", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    for sig in (*SHUTDOWN_SIGNALS, *FORWARDED_SIGNALS):
        assert sig.name in text, sig.name


@pytest.mark.parametrize("mode", ["serve", "run"])
def test_cli_help_gives_auto_as_the_prestop_delay_default(mode: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert exit_status([mode, "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "[env SIDECAR_PRESTOP_DELAY; default auto]" in text
    assert "[env SIDECAR_PRESTOP_DELAY_MAX; default 15.0]" in text


def test_cli_serve_help_names_every_endpoint(capsys: pytest.CaptureFixture[str]) -> None:
    assert exit_status(["serve", "--help"]) == 0
    text = capsys.readouterr().out
    for path in ("/livez", "/readyz", "/startupz", "/status", "/metrics", "/events", "/prestop", "/drain"):
        assert path in text, path


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        pytest.param(["--grace-period", "soon"], "--grace-period", id="non-numeric"),
        pytest.param(["--grace-period", "0"], "--grace-period", id="zero"),
        pytest.param(["--prestop-delay", "-1"], "--prestop-delay", id="negative"),
        pytest.param(["--grace-period", "5", "--prestop-delay", "4.5"], "--prestop-delay", id="timing"),
        # The default hold is auto, budgeted at its 15 s maximum: a 10 s grace period cannot hold it.
        pytest.param(["--grace-period", "10"], "--prestop-delay-max", id="default-auto-past-the-grace-period"),
        pytest.param(["--port", "70000"], "--port", id="port-range"),
        pytest.param(["--app-port", "0"], "--app-port", id="app-port-zero"),
        pytest.param(["--stop-signal", "SIGKILL"], "--stop-signal", id="stop-signal"),
        pytest.param(["--native-sidecar", "maybe"], "--native-sidecar", id="bool"),
        pytest.param(["--log-level", "loud"], "--log-level", id="log-level"),
        pytest.param(["--no-such-flag"], "--no-such-flag", id="unknown-flag"),
        pytest.param(["--grace-period"], "--grace-period", id="missing-value"),
    ],
)
def test_cli_bad_value_exits_2_with_one_line_naming_the_flag(
    args: list[str], flag: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert exit_status(["serve", "--port", "0", *args]) == EXIT_USAGE == 2
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert flag in lines[0]
    assert lines[0].startswith("shutdown-sidecar")
    assert captured.out == ""


def test_cli_bad_environment_value_names_flag_and_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SIDECAR_GRACE_PERIOD", "thirty")
    assert exit_status(["serve", "--port", "0"]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert "--grace-period (from SIDECAR_GRACE_PERIOD)" in line


def test_cli_unsupported_tracing_exporter_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "zipkin")
    assert exit_status(["serve", "--port", "0"]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert "OTEL_TRACES_EXPORTER" in line


@pytest.mark.parametrize("args", [pytest.param(["run"], id="nothing"), pytest.param(["run", "--"], id="dashes")])
def test_cli_run_without_a_command_exits_2(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert exit_status(args) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert "command" in line


def test_cli_without_a_command_prints_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert exit_status([]) == 2
    err = capsys.readouterr().err
    assert "serve" in err
    assert "run" in err
    assert "simulate" in err


def test_cli_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert exit_status(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"shutdown-sidecar {__version__}"


@pytest.mark.parametrize("mode", ["serve", "run", "simulate"])
@pytest.mark.parametrize("hidden", ["uvicorn", "opentelemetry.sdk"])
def test_cli_without_the_server_extra_exits_2_with_one_line_naming_the_install(
    mode: str, hidden: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The app-side install (`pip install shutdown-sidecar`) has no server stack: a mode that needs
    it says which install brings it, before anything starts (tests/test_packaging.py runs it for real)."""
    monkeypatch.setitem(sys.modules, hidden, None)  # what find_spec sees for a module that is not installed
    assert exit_status([mode, "--", "true"] if mode == "run" else [mode]) == EXIT_USAGE
    [line] = capsys.readouterr().err.splitlines()
    assert f"{mode} needs the server dependencies, missing here ({hidden}" in line
    assert line.endswith(": pip install 'shutdown-sidecar[server]'")


def test_cli_server_modules_name_every_distribution_of_the_server_extra() -> None:
    """A dependency added to the `server` extra but not to SERVER_MODULES would turn the one-line
    error of an incomplete install into a traceback."""
    pyproject = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())

    def module_of(distribution: str) -> str:  # opentelemetry-sdk: opentelemetry.sdk, a namespace package
        return distribution.replace("-", "." if distribution.startswith("opentelemetry-") else "_")

    extra = pyproject["project"]["optional-dependencies"]["server"]
    assert sorted(module_of(canonicalize_name(Requirement(line).name)) for line in extra) == sorted(SERVER_MODULES)
