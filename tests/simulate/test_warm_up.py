"""The rehearsal's warm-up: long enough for an auto hold's history to behave as a long-running
pod's (its maximum), short for a fixed hold; read from the pod's own sidecar, as it will run."""

from __future__ import annotations

import pytest

from sidecar.cli import build_parser
from sidecar.config import setting_specs
from sidecar.simulate.command import pod_template
from sidecar.simulate.options import options_from_args
from sidecar.simulate.podspec import ContainerSpec, Mode, PodTemplate
from sidecar.simulate.warm_up import FIXED_HOLD_WARM_UP_SECONDS, auto_hold_maximum_seconds, warm_up_seconds


def template_of(*flags: str) -> PodTemplate:
    return pod_template(options_from_args(build_parser().parse_args(["simulate", *flags])))


def with_sidecar(argv: tuple[str, ...], env: dict[str, str] | None = None) -> PodTemplate:
    sidecar = ContainerSpec("shutdown-sidecar", argv, env or {}, reports=True)
    return PodTemplate(Mode.NATIVE, 30.0, (sidecar,), (ContainerSpec("app", ("app",), serves_traffic=True),))


DEFAULT_MAXIMUM = next(spec.default for spec in setting_specs() if spec.name == "prestop_delay_max_seconds")


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        pytest.param(("--prestop-delay", "auto", "--prestop-delay-max", "7"), 7.0, id="auto-its-maximum"),
        pytest.param(("--prestop-delay", "3"), FIXED_HOLD_WARM_UP_SECONDS, id="fixed-short"),
        pytest.param(("--mode", "none"), FIXED_HOLD_WARM_UP_SECONDS, id="no-sidecar-short"),
        pytest.param(("--prestop-delay", "auto", "--prestop-delay-max", "0.5"), 1.0, id="auto-never-below-a-second"),
    ],
)
def test_warm_up_seconds_default_follows_the_pods_hold(flags: tuple[str, ...], expected: float) -> None:
    assert warm_up_seconds(template_of(*flags), None) == expected


def test_warm_up_seconds_given_wins_over_the_default() -> None:
    assert warm_up_seconds(template_of("--prestop-delay", "auto", "--prestop-delay-max", "7"), 2.5) == 2.5
    assert warm_up_seconds(template_of("--prestop-delay", "3"), 20.0) == 20.0


@pytest.mark.parametrize(
    ("argv", "env", "expected"),
    [
        pytest.param(("serve", "--prestop-delay", "auto", "--prestop-delay-max", "9"), {}, 9.0, id="two-tokens"),
        pytest.param(("serve", "--prestop-delay=auto", "--prestop-delay-max=9"), {}, 9.0, id="equals"),
        pytest.param(("serve",), {"SIDECAR_PRESTOP_DELAY": "auto", "SIDECAR_PRESTOP_DELAY_MAX": "9"}, 9.0, id="env"),
        pytest.param(("serve", "--prestop-delay-max=9"), {"SIDECAR_PRESTOP_DELAY": "auto"}, 9.0, id="flag-and-env"),
        pytest.param(("serve", "--prestop-delay=auto"), {}, DEFAULT_MAXIMUM, id="the-sidecars-default-maximum"),
        pytest.param(("serve", "--prestop-delay=4", "--prestop-delay-max=9"), {}, None, id="fixed"),
        pytest.param(
            ("serve", "--prestop-delay=auto"), {"SIDECAR_PRESTOP_DELAY": "4"}, DEFAULT_MAXIMUM, id="flag-over-env"
        ),
        # run mode: what follows -- is the app's command, whatever flags it has.
        pytest.param(("run", "--prestop-delay=2", "--", "app", "--prestop-delay=auto"), {}, None, id="run-app-flags"),
        pytest.param(("serve", "--prestop-delay=soon"), {}, None, id="refused-by-the-sidecar"),
    ],
)
def test_auto_hold_maximum_seconds_reads_the_sidecar_as_it_will_run(
    argv: tuple[str, ...], env: dict[str, str], expected: float | None
) -> None:
    assert auto_hold_maximum_seconds(with_sidecar(argv, env)) == expected
