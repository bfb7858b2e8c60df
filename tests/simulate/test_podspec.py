"""The pod each --mode builds, as the chart wires it: where the sidecar sits, its probes and
flags, the app's preStop hook; and the placeholder substitution that fills the commands."""

from __future__ import annotations

import sys

import pytest

from sidecar.deadline import Budget
from sidecar.simulate.podspec import (
    ADMIN_PORT,
    ADMIN_PORT_PLACEHOLDER,
    APP_PORT,
    POD_NAME_PLACEHOLDER,
    PORT_PLACEHOLDER,
    SIDECAR_PLACEHOLDER,
    SIDECAR_URL_ENV,
    TERMINATION_LOG_PLACEHOLDER,
    ContainerSpec,
    HttpGet,
    Mode,
    PodTemplate,
    Probe,
    TcpSocket,
    filled_command,
    substitute,
    template_for_mode,
)

BUDGET = Budget(grace_period_seconds=12.5, prestop_delay_seconds=2.5, report_reserve_seconds=1.5)
APP_COMMAND = ("my-app", "--listen", f"127.0.0.1:{PORT_PLACEHOLDER}", '{"a": 1}')
SIDECAR_NAME = "shutdown-sidecar"


def template(mode: Mode) -> PodTemplate:
    return template_for_mode(mode, BUDGET, APP_COMMAND)


def app_of(pod: PodTemplate) -> ContainerSpec:
    (app,) = [c for c in pod.all_containers if c.serves_traffic]
    return app


def sidecar_of(pod: PodTemplate) -> ContainerSpec:
    (sidecar,) = [c for c in pod.all_containers if c.reports]
    return sidecar


def action_of(probe: Probe | None) -> HttpGet | TcpSocket | None:
    return None if probe is None else probe.action


def test_template_native_puts_the_sidecar_first_as_a_native_sidecar() -> None:
    pod = template(Mode.NATIVE)
    assert (pod.mode, pod.grace_period_seconds) == (Mode.NATIVE, 12.5)
    assert [c.name for c in pod.sidecars] == [SIDECAR_NAME]
    assert [c.name for c in pod.containers] == ["app"]
    (sidecar,) = pod.sidecars
    assert (sidecar.reports, sidecar.serves_traffic) == (True, False)
    assert action_of(sidecar.startup) == HttpGet(ADMIN_PORT, "/startupz")
    assert action_of(sidecar.readiness) == HttpGet(ADMIN_PORT, "/readyz")
    assert sidecar.argv[:4] == (sys.executable, "-m", "sidecar", "serve")
    assert "--native-sidecar=true" in sidecar.argv
    assert sidecar.pre_stop is None


def test_template_classic_puts_the_sidecar_after_the_app_without_the_native_flag() -> None:
    pod = template(Mode.CLASSIC)
    assert pod.sidecars == ()
    assert [c.name for c in pod.containers] == ["app", SIDECAR_NAME]
    sidecar = pod.containers[1]
    assert (sidecar.reports, sidecar.serves_traffic) == (True, False)
    assert action_of(sidecar.readiness) == HttpGet(ADMIN_PORT, "/readyz")
    assert sidecar.argv[:4] == (sys.executable, "-m", "sidecar", "serve")
    assert not any(arg.startswith("--native-sidecar") for arg in sidecar.argv)


@pytest.mark.parametrize("mode", [pytest.param(Mode.NATIVE, id="native"), pytest.param(Mode.CLASSIC, id="classic")])
def test_template_with_a_separate_sidecar_runs_the_app_command_as_given(mode: Mode) -> None:
    app = app_of(template(mode))
    assert app.name == "app"
    assert app.argv == APP_COMMAND
    assert not app.reports
    assert app.readiness is None  # as in the chart: the sidecar's readiness waits for the app's port


def test_template_run_wraps_the_app_in_one_container() -> None:
    pod = template(Mode.RUN)
    assert pod.sidecars == ()
    (wrapper,) = pod.containers
    assert (wrapper.serves_traffic, wrapper.reports) == (True, True)
    assert wrapper.argv[:4] == (sys.executable, "-m", "sidecar", "run")
    dashes = wrapper.argv.index("--")
    assert wrapper.argv[dashes + 1 :] == APP_COMMAND
    assert action_of(wrapper.readiness) == HttpGet(ADMIN_PORT, "/readyz")


def test_template_none_is_the_app_alone_without_hook() -> None:
    pod = template(Mode.NONE)
    assert pod.sidecars == ()
    (app,) = pod.containers
    assert app.argv == APP_COMMAND
    assert (app.serves_traffic, app.reports) == (True, False)
    assert app.pre_stop is None
    assert action_of(app.readiness) == TcpSocket(APP_PORT)
    assert not any(c.reports for c in pod.all_containers)


@pytest.mark.parametrize("mode", [pytest.param(m, id=m.value) for m in Mode if m is not Mode.NONE])
def test_template_app_prestop_hook_calls_the_sidecar(mode: Mode) -> None:
    assert app_of(template(mode)).pre_stop == HttpGet(ADMIN_PORT, "/prestop")


@pytest.mark.parametrize("mode", [pytest.param(m, id=m.value) for m in Mode if m is not Mode.NONE])
def test_template_sidecar_argv_carries_the_timing_and_ports(mode: Mode) -> None:
    argv = sidecar_of(template(mode)).argv
    for flag in (
        "--grace-period=12.5",
        "--prestop-delay=2.5",
        "--report-reserve=1.5",
        "--host={host}",
        f"--port={ADMIN_PORT_PLACEHOLDER}",
        f"--app-port={PORT_PLACEHOLDER}",
        f"--termination-log={TERMINATION_LOG_PLACEHOLDER}",
    ):
        assert flag in argv


@pytest.mark.parametrize("mode", [pytest.param(m, id=m.value) for m in Mode])
def test_template_has_one_container_that_serves_traffic(mode: Mode) -> None:
    pod = template(mode)
    assert sum(c.serves_traffic for c in pod.all_containers) == 1
    assert pod.grace_period_seconds == BUDGET.grace_period_seconds


VALUES = {
    PORT_PLACEHOLDER: "18080",
    ADMIN_PORT_PLACEHOLDER: "18081",
    TERMINATION_LOG_PLACEHOLDER: "/tmp/x/app.termination-log",  # noqa: S108 - never opened
    POD_NAME_PLACEHOLDER: "pod-3",
}


@pytest.mark.parametrize(
    ("argv", "filled"),
    [
        pytest.param(["--port={port}"], ["--port=18080"], id="in-a-flag"),
        pytest.param(["{admin_port}", "{port}"], ["18081", "18080"], id="whole-arguments"),
        pytest.param(["{port}-{port}"], ["18080-18080"], id="twice-in-one"),
        pytest.param(["--log={termination_log}"], ["--log=/tmp/x/app.termination-log"], id="termination-log"),
        pytest.param(["name={pod_name}"], ["name=pod-3"], id="pod-name"),
        pytest.param(['{"a": 1}'], ['{"a": 1}'], id="json-left-alone"),
        pytest.param(["{unknown} {0} {}"], ["{unknown} {0} {}"], id="other-braces-left-alone"),
        pytest.param(["${PORT}"], ["${PORT}"], id="shell-variable-left-alone"),
        pytest.param([], [], id="empty"),
    ],
)
def test_substitute_fills_only_the_placeholders(argv: list[str], filled: list[str]) -> None:
    assert substitute(argv, VALUES) == filled


def test_substitute_leaves_its_input_unchanged() -> None:
    argv = ("--port={port}",)
    substitute(argv, VALUES)
    assert argv == ("--port={port}",)


def test_filled_command_gives_the_app_its_sidecars_url_in_arguments_and_environment() -> None:
    app = ContainerSpec("app", ("my-app", "--events", f"{SIDECAR_PLACEHOLDER}/events"), serves_traffic=True)
    values = {PORT_PLACEHOLDER: "10001", SIDECAR_PLACEHOLDER: "http://127.0.0.1:10002"}
    argv, env = filled_command(app, values)
    assert argv == ["my-app", "--events", "http://127.0.0.1:10002/events"]
    assert env == {"PORT": "10001", SIDECAR_URL_ENV: "http://127.0.0.1:10002"}


def test_filled_command_overrides_a_charts_sidecar_url_with_the_pods_own() -> None:
    app = ContainerSpec("app", ("my-app",), env={SIDECAR_URL_ENV: "http://127.0.0.1:9180"}, serves_traffic=True)
    _, env = filled_command(app, {PORT_PLACEHOLDER: "10001", SIDECAR_PLACEHOLDER: "http://127.0.0.1:10002"})
    assert env[SIDECAR_URL_ENV] == "http://127.0.0.1:10002"


def test_filled_command_without_a_sidecar_leaves_the_url_empty_and_unset() -> None:
    app = ContainerSpec("app", ("my-app", f"--sidecar-url={SIDECAR_PLACEHOLDER}"), serves_traffic=True)
    argv, env = filled_command(app, {PORT_PLACEHOLDER: "10001", SIDECAR_PLACEHOLDER: ""})
    assert argv == ["my-app", "--sidecar-url="]
    assert SIDECAR_URL_ENV not in env


def test_filled_command_gives_a_sidecar_container_no_sidecar_url() -> None:
    sidecar = ContainerSpec("shutdown-sidecar", ("sidecar",), reports=True)
    _, env = filled_command(sidecar, {PORT_PLACEHOLDER: "10001", SIDECAR_PLACEHOLDER: "http://127.0.0.1:10002"})
    assert env == {}
