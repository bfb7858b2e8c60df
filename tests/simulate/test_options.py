"""simulate's flags through the real parser: the defaults, each bad value refused with a
SettingsError naming its flag before anything starts, and the app command kept verbatim."""

from __future__ import annotations

import sys

import pytest

from sidecar.cli import build_parser, main
from sidecar.config import SettingsError
from sidecar.deadline import Budget
from sidecar.simulate.options import (
    MAX_CONNECTIONS,
    MAX_PODS,
    MAX_RATE_PER_SECOND,
    REPORT_RESERVE_SECONDS,
    Options,
    option_specs,
    options_from_args,
)
from sidecar.simulate.podspec import Mode, demo_app_command
from sidecar.simulate.pool import BalancerKind, ClientKind

MISSING_COMMAND = "shutdown-sidecar-test-no-such-command"


def options(*flags: str) -> Options:
    return options_from_args(build_parser().parse_args(["simulate", *flags]))


def test_options_defaults() -> None:
    got = options()
    assert got.mode is Mode.NATIVE
    # The sidecar's default hold, auto, budgeted at a maximum that fits the 10 s grace period.
    assert (got.prestop_delay_seconds, got.prestop_delay_max_seconds) == (None, 8.0)
    assert got.budget == Budget(10.0, 8.0, REPORT_RESERVE_SECONDS)
    assert got.hold_rule is not None
    assert got.hold_rule.evidence == "connections"
    assert got.propagation_delay_seconds == 2.0
    assert got.propagation_spread_seconds == 0.0
    assert got.rate_per_second == 50.0
    assert got.pods == 3
    assert got.request_timeout_seconds == 5.0
    assert got.seed == 1
    # Pooled keep-alive clients behind a connection-level balancer: what most real clients meet.
    assert (got.client, got.balancer, got.connections) == (ClientKind.POOLED, BalancerKind.L4, 16)
    assert got.app_command == demo_app_command()
    assert (got.chart, got.values, got.logs, got.json) == (None, None, None, False)


def test_options_help_shows_each_declared_default(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["simulate", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    for spec in option_specs():
        assert spec.flag in help_text
        if spec.default is not None:
            assert f"[default {spec.default}]" in help_text, spec.flag


def test_options_every_field_but_the_app_command_is_a_flag() -> None:
    declared = {spec.name for spec in option_specs()}
    assert declared == {field for field in Options.__dataclass_fields__} - {"app_command"}


def test_options_take_every_flag() -> None:
    got = options(
        "--mode=classic",
        "--grace-period=30",
        "--prestop-delay=5",
        "--propagation-delay=1.5",
        "--propagation-spread=0.5",
        "--rps=200",
        f"--pods={MAX_PODS}",
        "--request-timeout=2",
        "--seed=7",
        "--client=fresh",
        "--balancer=l7",
        f"--connections={MAX_CONNECTIONS}",
        "--logs=rehearsal-logs",
        "--json",
    )
    assert got.mode is Mode.CLASSIC
    assert got.budget == Budget(30.0, 5.0, REPORT_RESERVE_SECONDS)
    assert (got.propagation_delay_seconds, got.propagation_spread_seconds) == (1.5, 0.5)
    assert (got.rate_per_second, got.pods, got.request_timeout_seconds, got.seed) == (200.0, MAX_PODS, 2.0, 7)
    assert (got.client, got.balancer, got.connections) == (ClientKind.FRESH, BalancerKind.L7, MAX_CONNECTIONS)
    assert str(got.logs) == "rehearsal-logs"
    assert got.json is True


@pytest.mark.parametrize("mode", [pytest.param(m, id=m.value) for m in Mode])
def test_options_mode_takes_each_mode(mode: Mode) -> None:
    assert options("--mode", mode.value).mode is mode


def test_options_grace_period_just_longer_than_prestop_delay_and_reserve_is_accepted() -> None:
    assert options("--grace-period=5", "--prestop-delay=3.9").budget.grace_period_seconds == 5


def test_options_grace_period_in_whole_seconds_as_terminationGracePeriodSeconds() -> None:
    with pytest.raises(SettingsError, match="--grace-period: expected a whole number of seconds"):
        options("--grace-period=4.5", "--prestop-delay=3")


@pytest.mark.parametrize(
    ("flags", "surge_unavailable"),
    [
        pytest.param((), (1, 0), id="deployment-defaults-25-percent-of-3"),
        pytest.param(("--pods=1",), (1, 0), id="deployment-one-replica-surge-rounded-up"),
        pytest.param(("--pods=4", "--max-surge=0"), (0, 1), id="deployment-no-surge"),
        pytest.param(("--pods=3", "--max-surge=0", "--max-unavailable=0"), (0, 1), id="both-zero-means-one"),
        pytest.param(("--pods=10", "--max-surge=15%", "--max-unavailable=15%"), (2, 1), id="percent-rounding"),
        pytest.param(("--kind=DaemonSet", "--pods=10"), (0, 1), id="daemonset-defaults"),
        pytest.param(("--kind=DaemonSet", "--pods=10", "--max-unavailable=15%"), (0, 2), id="daemonset-rounds-up"),
    ],
)
def test_options_strategy_fenceposts_round_as_the_controllers_do(
    flags: tuple[str, ...], surge_unavailable: tuple[int, int]
) -> None:
    got = options(*flags)
    assert got.strategy.fenceposts(got.pods) == surge_unavailable


def test_options_recreate_is_a_deployments_only() -> None:
    with pytest.raises(SettingsError, match="--kind: strategy Recreate is a Deployment's"):
        options("--kind=StatefulSet", "--strategy=Recreate")


def test_options_chart_supplies_the_sidecars_readiness_probe() -> None:
    with pytest.raises(SettingsError, match="--sidecar-readiness: comes from the chart"):
        options("--chart=charts/shutdown-sidecar", "--sidecar-readiness=stop")


def test_options_chart_with_values() -> None:
    got = options("--chart=charts/shutdown-sidecar", "--values=my-values.yaml")
    assert (str(got.chart), str(got.values)) == ("charts/shutdown-sidecar", "my-values.yaml")


@pytest.mark.parametrize(
    ("flag", "expected"),
    [
        pytest.param("--chart=charts/shutdown-sidecar", "--manifest: conflicts with --chart", id="chart"),
        pytest.param("--max-surge=0", "--max-surge: comes from the manifest", id="max-surge"),
        pytest.param("--pods=2", "--pods: comes from the manifest", id="pods"),
        pytest.param("--stop-signal=SIGINT", "--stop-signal: comes from the manifest", id="stop-signal"),
        # The sidecar's readiness probe is the manifest's: the flag was silently ignored.
        pytest.param("--sidecar-readiness=stop", "--sidecar-readiness: comes from the manifest", id="readiness"),
    ],
)
def test_options_manifest_conflicts_with_chart_and_what_it_supplies(flag: str, expected: str) -> None:
    with pytest.raises(SettingsError, match=expected):
        options("--manifest=web.yaml", flag)


@pytest.mark.parametrize(
    ("flags", "flag"),
    [
        pytest.param(["--grace-period=4", "--prestop-delay=3"], "--grace-period", id="grace-equals-delay-plus-reserve"),
        pytest.param(["--grace-period=2", "--prestop-delay=3"], "--grace-period", id="grace-shorter-than-delay"),
        pytest.param(["--grace-period=0"], "--grace-period", id="grace-zero"),
        pytest.param(["--grace-period=ten"], "--grace-period", id="grace-not-a-number"),
        pytest.param(["--prestop-delay=-1"], "--prestop-delay", id="prestop-delay-negative"),
        pytest.param(["--rps=0"], "--rps", id="rps-zero"),
        pytest.param(["--rps=-1"], "--rps", id="rps-negative"),
        pytest.param(["--rps=abc"], "--rps", id="rps-not-a-number"),
        pytest.param(["--rps=nan"], "--rps", id="rps-nan"),
        pytest.param([f"--rps={MAX_RATE_PER_SECOND + 1:g}"], "--rps", id="rps-above-the-max"),
        pytest.param(["--pods=0"], "--pods", id="pods-zero"),
        pytest.param([f"--pods={MAX_PODS + 1}"], "--pods", id="pods-above-the-max"),
        pytest.param(["--pods=2.5"], "--pods", id="pods-not-whole"),
        pytest.param(["--propagation-delay=-0.5"], "--propagation-delay", id="propagation-negative"),
        pytest.param(["--propagation-spread=-1"], "--propagation-spread", id="spread-negative"),
        pytest.param(["--request-timeout=0"], "--request-timeout", id="request-timeout-zero"),
        pytest.param(["--seed=-1"], "--seed", id="seed-negative"),
        pytest.param(["--connections=0"], "--connections", id="connections-zero"),
        pytest.param([f"--connections={MAX_CONNECTIONS + 1}"], "--connections", id="connections-above-the-max"),
        pytest.param(["--chart=c", "--mode=native"], "--mode", id="chart-with-mode"),
        pytest.param(["--chart=c", "--grace-period=30"], "--grace-period", id="chart-with-grace-period"),
        pytest.param(["--chart=c", "--prestop-delay=1"], "--prestop-delay", id="chart-with-prestop-delay"),
        pytest.param(["--chart=c", "--pods=5"], "--pods", id="chart-with-pods"),
        pytest.param(["--chart=c", "--max-surge=0"], "--max-surge", id="chart-with-max-surge"),
        pytest.param(["--values=v.yaml"], "--values", id="values-without-chart"),
        pytest.param(["--"], "--", id="nothing-after-dashes"),
        pytest.param(["--", MISSING_COMMAND, "--port", "{port}"], "APP CMD", id="app-not-on-path"),
    ],
)
def test_options_refuse_a_bad_value_naming_its_flag(flags: list[str], flag: str) -> None:
    with pytest.raises(SettingsError) as raised:
        options(*flags)
    assert raised.value.flag == flag
    assert str(raised.value).startswith(f"{flag}: ")
    assert raised.value.reason


def test_options_app_not_on_path_names_the_command() -> None:
    with pytest.raises(SettingsError, match=MISSING_COMMAND):
        options("--", MISSING_COMMAND)


@pytest.mark.parametrize(
    "command",
    [
        pytest.param([sys.executable, "-m", "http.server", "{port}"], id="placeholder"),
        pytest.param([sys.executable, "-c", '{"a": 1}', "--rps", "9", "--", "-x"], id="flags-and-braces-after-dashes"),
        pytest.param(["sh", "-c", "exec my-app --port $PORT"], id="shell"),
    ],
)
def test_options_keep_the_app_command_after_dashes_verbatim(command: list[str]) -> None:
    got = options("--rps=5", "--", *command)
    assert got.app_command == tuple(command)
    assert got.rate_per_second == 5.0, "flags before -- still apply; those after it are the app's"


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        pytest.param(["simulate", "--pods", "0"], "--pods", id="pods"),
        pytest.param(["simulate", "--values", "v.yaml"], "--values", id="values"),
    ],
)
def test_main_simulate_bad_flag_exits_2_with_one_line(
    argv: list[str], flag: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"shutdown-sidecar simulate: error: {flag}: ")


def test_options_app_asgi_runs_the_built_in_uvicorn_app_with_the_middleware() -> None:
    assert options().app_command == demo_app_command()
    command = options("--app", "asgi").app_command
    assert command[1:3] == ("-m", "sidecar.simulate.asgi_app")
    with pytest.raises(SettingsError, match="--app"):
        options("--app", "asgi", "--", "true")


def test_options_prestop_delay_auto_is_budgeted_at_its_maximum_and_reaches_the_sidecar() -> None:
    from sidecar.simulate.podspec import template_for_mode

    chosen = options("--prestop-delay", "auto", "--prestop-delay-max", "6")
    assert chosen.hold_rule is not None
    assert chosen.budget.prestop_delay_seconds == 6
    template = template_for_mode(chosen.mode, chosen.budget, chosen.app_command, hold=chosen.hold_rule)
    (sidecar,) = template.sidecars
    flags = [arg for arg in sidecar.argv if arg.startswith("--prestop")]
    assert flags == [
        "--prestop-delay=auto",
        "--prestop-delay-min=1",
        "--prestop-delay-max=6",
        "--prestop-quiet-confidence=0.999",
        "--prestop-evidence=connections",
    ]


def test_options_prestop_evidence_reaches_the_sidecar_with_auto_and_is_ignored_with_a_fixed_delay() -> None:
    from sidecar.simulate.podspec import template_for_mode

    chosen = options("--prestop-delay", "auto", "--prestop-delay-max", "6", "--prestop-evidence", "requests")
    template = template_for_mode(chosen.mode, chosen.budget, chosen.app_command, hold=chosen.hold_rule)
    (sidecar,) = template.sidecars
    assert "--prestop-evidence=requests" in sidecar.argv
    # As the sidecar does with its auto-only settings: accepted with a fixed delay, no effect.
    fixed = options("--prestop-delay", "3", "--prestop-evidence", "requests")
    assert fixed.hold_rule is None
    (sidecar,) = template_for_mode(fixed.mode, fixed.budget, fixed.app_command, hold=fixed.hold_rule).sidecars
    assert not [arg for arg in sidecar.argv if arg.startswith("--prestop-evidence")]
    with pytest.raises(SystemExit):
        options("--prestop-evidence", "packets")


def test_options_prestop_delay_auto_maximum_must_fit_the_grace_period() -> None:
    with pytest.raises(SettingsError) as raised:
        options("--prestop-delay", "auto", "--prestop-delay-max", "12")
    assert raised.value.flag == "--grace-period"


def test_options_network_latency_and_load_shape_defaults() -> None:
    chosen = options()
    assert (chosen.network_latency_seconds, chosen.load_shape) == (0.0005, "steady")
    with pytest.raises(SystemExit):
        options("--load-shape", "square")
