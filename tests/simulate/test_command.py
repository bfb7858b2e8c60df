"""simulate's command: the pod template from --mode or --chart, the settings summary, the log
directory, the result printed as text or JSON, and a setup error ending in one line and exit 2."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest

from sidecar.cli import build_parser
from sidecar.simulate.command import (
    EXIT_USAGE,
    SetupError,
    flag_value,
    log_directory,
    pod_template,
    print_result,
    rehearsed,
    settings_document,
    simulate,
)
from sidecar.simulate.load import Tally
from sidecar.simulate.options import Options, options_from_args
from sidecar.simulate.podspec import Mode
from tests.simulate.manifests import CHART


def options(*flags: str) -> Options:
    return options_from_args(build_parser().parse_args(["simulate", *flags]))


@pytest.mark.parametrize(
    ("argv", "value"),
    [
        pytest.param(["x", "--prestop-delay=2.5"], 2.5, id="found"),
        pytest.param(["x", "--prestop-delay", "2.5"], None, id="two-tokens-not-read"),
        pytest.param(["x", "--prestop-delay=soon"], None, id="not-a-number"),
        pytest.param(["x"], None, id="absent"),
    ],
)
def test_flag_value_reads_a_flags_number(argv: list[str], value: float | None) -> None:
    assert flag_value(argv, "--prestop-delay") == value


def test_pod_template_from_the_mode_carries_the_budget() -> None:
    template = pod_template(options("--mode=classic", "--grace-period=12", "--prestop-delay=4"))
    assert template.mode is Mode.CLASSIC
    assert template.grace_period_seconds == 12


def test_rehearsed_chart_that_cannot_render_is_a_setup_error(tmp_path: Path) -> None:
    with pytest.raises(SetupError, match=r"^--chart: .* does not exist$"):
        rehearsed(options(f"--chart={tmp_path / 'absent'}"))


def test_rehearsed_chart_takes_replicas_and_strategy_from_its_values_and_lists_what_is_not_modelled(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    values = tmp_path / "values.yaml"
    values.write_text("replicaCount: 5\nstrategy: {type: RollingUpdate, rollingUpdate: {maxSurge: 0}}\n")
    chosen = options(f"--chart={CHART}", f"--values={values}")
    rollout = rehearsed(chosen)
    assert rollout.pods == 5
    assert (rollout.strategy.max_surge, rollout.strategy.max_unavailable) == ("0", None)
    assert settings_document(chosen, rollout)["strategy"] == "Deployment RollingUpdate: maxSurge 0, maxUnavailable 1"
    not_modelled = capsys.readouterr().err
    assert not_modelled.startswith("shutdown-sidecar simulate: not modelled: ")
    # The chart's pod and containers run non-root on a read-only root file system; here they do not.
    assert "spec.template.spec.securityContext" in not_modelled
    assert "spec.template.spec.containers[0].securityContext" in not_modelled


def test_settings_document_reads_the_prestop_delay_from_the_sidecars_command() -> None:
    chosen = options("--prestop-delay=4", "--grace-period=12", "--rps=20", "--seed=9")
    document = settings_document(chosen, rehearsed(chosen))
    assert (document["grace_period_seconds"], document["prestop_delay_seconds"]) == (12, 4)
    assert (document["rps"], document["seed"], document["chart"]) == (20, 9, None)


def test_settings_document_says_how_long_the_old_pods_served_before_the_first_deletion() -> None:
    auto = options("--prestop-delay=auto", "--prestop-delay-max=6")
    assert settings_document(auto, rehearsed(auto))["warm_up_seconds"] == 6
    given = options("--prestop-delay=auto", "--prestop-delay-max=6", "--warm-up=2")
    assert settings_document(given, rehearsed(given))["warm_up_seconds"] == 2


def test_settings_document_warm_up_follows_the_charts_auto_hold(tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    values.write_text("prestopDelaySeconds: auto\nprestopHold: {maxSeconds: 7}\n")
    chosen = options(f"--chart={CHART}", f"--values={values}")
    assert settings_document(chosen, rehearsed(chosen))["warm_up_seconds"] == 7


def test_settings_document_without_a_sidecar_has_no_prestop_delay() -> None:
    chosen = options("--mode=none")
    assert settings_document(chosen, rehearsed(chosen))["prestop_delay_seconds"] is None


def test_log_directory_keeps_the_given_one_and_removes_a_temporary_one(tmp_path: Path) -> None:
    kept = tmp_path / "logs"
    with log_directory(kept) as path:
        assert path == kept
    assert kept.is_dir()
    with log_directory(None) as path:
        assert path.is_dir()
    assert not path.exists()


def test_log_directory_keeps_a_temporary_one_when_a_pod_could_not_start() -> None:
    # The error names a container's log in it: that log must still be there to be read.
    def fail_to_start(path: Path) -> None:
        (path / "app.log").write_text("cannot bind\n")
        raise SetupError(f"old-1: app not ready after 30s (see {path / 'app.log'})")

    with pytest.raises(SetupError), log_directory(None) as path:
        fail_to_start(path)
    try:
        assert (path / "app.log").read_text() == "cannot bind\n"
    finally:
        shutil.rmtree(path)
    with pytest.raises(RuntimeError), log_directory(None) as path:
        raise RuntimeError("anything else")
    assert not path.exists()


@pytest.mark.parametrize("as_json", [pytest.param(True, id="json"), pytest.param(False, id="text")])
def test_print_result_prints_json_or_the_rendered_text(as_json: bool) -> None:
    result = {
        "verdict": "pass",
        "reasons": [],
        "mode": "none",
        "settings": {"chart": None},
        "duration_seconds": 1.0,
        "requests": Tally().document(),
        "pods": [],
    }
    stream = io.StringIO()
    print_result(result, as_json=as_json, stream=stream)
    text = stream.getvalue()
    assert text.endswith("\n")
    if as_json:
        assert json.loads(text) == result
    else:
        assert text.startswith("mode none, 0 pods replaced")


def test_simulate_setup_error_exits_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert simulate(options(f"--chart={tmp_path}")) == EXIT_USAGE
    captured = capsys.readouterr()
    assert captured.out == ""
    assert (
        captured.err == f"shutdown-sidecar simulate: error: --chart: {tmp_path} is not a Helm chart (no Chart.yaml)\n"
    )
