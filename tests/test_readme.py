"""The README is the first thing an operator reads: it must not drift from the code."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry

from sidecar import __version__
from sidecar.cli import build_parser
from sidecar.config import setting_specs
from sidecar.telemetry.metrics import ShutdownMetrics

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
CHART = ROOT / "charts" / "shutdown-sidecar"


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


def test_readme_names_every_simulate_flag() -> None:
    commands = next(a for a in build_parser()._actions if a.dest == "mode")
    simulate = commands.choices["simulate"]  # type: ignore[index]
    flags = [flag for action in simulate._actions for flag in action.option_strings if flag.startswith("--")]
    assert len(flags) > 10
    for flag in flags:
        if flag != "--help":
            assert f"`{flag}" in README, flag


def test_readme_first_command_runs_simulate() -> None:
    first_block = README.split("```sh", 1)[1].split("```", 1)[0]
    assert "shutdown-sidecar simulate" in first_block
    # simulate needs the server extra; the bare install is the app side's (tests/test_packaging.py).
    assert "pip install '.[server]'" in first_block


# The README is also the package's long description on PyPI, and the chart's README is shown on
# Artifact Hub and in a pulled chart: in all three a relative link leads nowhere.
REPOSITORY_FILE = re.compile(
    r"https://(?:github\.com/shutdown-sidecar/shutdown-sidecar/(?:blob|tree)|raw\.githubusercontent\.com/"
    r"shutdown-sidecar/shutdown-sidecar)/main/([^)#\s]+)"
)
CHART_README = (CHART / "README.md").read_text()


@pytest.mark.parametrize("text", [README, CHART_README], ids=["README", "chart README"])
def test_readme_links_are_absolute_for_pypi_and_artifact_hub(text: str) -> None:
    targets = re.findall(r"\]\(([^)\s]+)", text)
    assert targets
    relative = [target for target in targets if not target.startswith(("https://", "http://", "#"))]
    assert relative == []


@pytest.mark.parametrize(
    ("text", "must_name"),
    [(README, "charts/shutdown-sidecar/README.md"), (CHART_README, "charts/shutdown-sidecar/files/alerts.yaml")],
    ids=["README", "chart README"],
)
def test_readme_repository_links_name_files_that_exist(text: str, must_name: str) -> None:
    files = REPOSITORY_FILE.findall(text)
    assert must_name in files
    for name in files:
        assert (ROOT / name).exists(), name


def test_readme_pictures_are_raw_files_that_render_on_pypi() -> None:
    # A blob/ address is GitHub's HTML page about the file: an image there shows as broken.
    pictures = re.findall(r"!\[[^\]]*\]\(([^)\s]+)", README)
    assert pictures
    for picture in pictures:
        assert picture.startswith("https://raw.githubusercontent.com/shutdown-sidecar/shutdown-sidecar/main/"), picture


def test_readme_gives_the_page_commands() -> None:
    assert "shutdown-sidecar simulate --html" in README
    assert "| .venv/bin/shutdown-sidecar report --html" in README


def test_readme_install_and_deploy_lines_name_the_current_versions() -> None:
    """What a user copies: the app side's pin, the image build, the chart from the registry."""
    assert "pip install shutdown-sidecar\n" in README
    assert f"`shutdown-sidecar=={__version__}`" in README
    assert f"-t <your registry>/shutdown-sidecar:{__version__} --push ." in README
    assert "docker buildx build --platform linux/amd64,linux/arm64" in README
    chart_version = yaml.safe_load((CHART / "Chart.yaml").read_text())["version"]
    for text in (README, (CHART / "README.md").read_text()):
        versions = re.findall(
            r"helm install \S+ oci://ghcr.io/shutdown-sidecar/charts/shutdown-sidecar --version (\S+)", text
        )
        assert versions
        assert set(versions) == {chart_version}


def settings_table_default(flag: str) -> str:
    """The default column of the Settings table's row for `flag`."""
    row = next(line for line in README.splitlines() if line.startswith(f"| `{flag}` |"))
    return row.split("|")[3].strip().strip("`")


def test_readme_settings_table_gives_the_holds_defaults_as_the_code_has_them() -> None:
    specs = {spec.flag: spec for spec in setting_specs()}
    for flag in ("--prestop-delay", "--prestop-delay-min", "--prestop-delay-max", "--prestop-quiet-confidence"):
        shown = specs[flag].shown_default
        assert settings_table_default(flag) == shown.removesuffix(".0"), flag
    assert settings_table_default("--prestop-delay") == "auto"


def test_readme_and_chart_readme_give_the_charts_hold_defaults() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert (values["prestopDelaySeconds"], values["prestopHold"]["maxSeconds"]) == ("auto", 9)
    for name, value in (("prestopDelaySeconds", "auto"), ("prestopHold.maxSeconds", "9")):
        assert f"| `{name}` | `{value}` |" in CHART_README, name
