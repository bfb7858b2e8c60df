"""The README is the first thing an operator reads: it must not drift from the code."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry

from sidecar.config import setting_specs
from sidecar.telemetry.metrics import ShutdownMetrics

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def test_readme_names_every_setting_and_its_environment_variable() -> None:
    for spec in setting_specs():
        assert f"`{spec.flag}`" in README, spec.flag
        assert f"`{spec.env_var}`" in README, spec.env_var


def test_readme_names_every_exported_metric() -> None:
    metrics = ShutdownMetrics(CollectorRegistry(), version="x", grace_period_seconds=30)
    for family in metrics.registry.collect():
        name = family.name + ("_total" if family.type == "counter" else "")
        assert f"`{name}" in README, name


def test_readme_test_command_is_what_ci_runs() -> None:
    assert "bash .ci/run" in README
