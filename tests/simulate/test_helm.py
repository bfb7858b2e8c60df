"""Rendering a chart for simulate --chart: the project's chart through the real Helm engine, the
errors of a chart or values file that cannot be rendered (one line, naming --chart or --values),
and the `helm` executable fallback."""

from __future__ import annotations

import re
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from sidecar.simulate.helm import ChartError, render_chart
from tests.simulate.manifests import CHART


def values_file(tmp_path: Path, values: dict[str, Any]) -> Path:
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def test_render_chart_default_values_renders_the_workload_without_notes() -> None:
    objects = render_chart(CHART, None)
    kinds = sorted(obj["kind"] for obj in objects)
    assert kinds == ["Deployment", "PodDisruptionBudget", "Secret", "Service", "ServiceAccount"]
    assert objects[0]["metadata"]["name"] == "simulate-shutdown-sidecar"


def test_render_chart_timing_the_chart_refuses_raises_helms_message(tmp_path: Path) -> None:
    with pytest.raises(ChartError, match=r"^--chart: .*timing: terminationGracePeriodSeconds \(10\) must be at least"):
        render_chart(CHART, values_file(tmp_path, {"terminationGracePeriodSeconds": 10}))


def test_render_chart_schema_violation_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ChartError, match="value must be one of") as caught:
        render_chart(CHART, values_file(tmp_path, {"sidecar": {"mode": "sometimes"}}))
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        pytest.param("absent", "does not exist", id="missing"),
        pytest.param("", r"is not a Helm chart \(no Chart\.yaml\)", id="not-a-chart"),
    ],
)
def test_render_chart_without_a_chart_names_chart(tmp_path: Path, name: str, reason: str) -> None:
    with pytest.raises(ChartError, match=rf"^--chart: {re.escape(str(tmp_path / name))} {reason}$"):
        render_chart(tmp_path / name, None)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("- a\n- b\n", id="list"),
        pytest.param("just words\n", id="scalar"),
        pytest.param("sidecar: [\n", id="not-yaml"),
    ],
)
def test_render_chart_values_not_a_mapping_names_values(tmp_path: Path, text: str) -> None:
    values_file = tmp_path / "values.yaml"
    values_file.write_text(text)
    with pytest.raises(ChartError, match=rf"^--values: {re.escape(str(values_file))}"):
        render_chart(CHART, values_file)


def test_render_chart_missing_values_file_names_values(tmp_path: Path) -> None:
    with pytest.raises(ChartError, match=r"^--values: cannot read"):
        render_chart(CHART, tmp_path / "absent.yaml")


# --- the `helm` executable, when helm-python-sdk is not installed ---------------------------------

FAKE_HELM = """\
#!{python}
import pathlib, sys
pathlib.Path(sys.argv[0]).with_name("argv.txt").write_text("\\n".join(sys.argv[1:]))
{body}
"""


def fake_helm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str) -> Path:
    """A `helm` executable alone on PATH, recording its arguments; helm_python made unimportable."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    helm = bin_dir / "helm"
    helm.write_text(FAKE_HELM.format(python=sys.executable, body=textwrap.dedent(body)))
    helm.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setitem(sys.modules, "helm_python", None)
    return bin_dir / "argv.txt"


def test_render_chart_without_sdk_runs_helm_template(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    values_file = tmp_path / "values.yaml"
    values_file.write_text("replicaCount: 1\n")
    manifest = "---\n# Source: x/templates/a.yaml\nkind: Service\n---\nkind: Deployment\n"
    argv_file = fake_helm(tmp_path, monkeypatch, f"sys.stdout.write({manifest!r})")
    objects = render_chart(CHART, values_file)
    assert objects == [{"kind": "Service"}, {"kind": "Deployment"}]
    expected = ["template", "simulate", str(CHART), "--namespace", "default", "--values", str(values_file)]
    assert argv_file.read_text().splitlines() == expected


def test_render_chart_without_sdk_reports_helms_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    body = """
        sys.stderr.write("WARNING: something minor\\nError: execution error at (t.yaml:1:2):\\n  timing: too short\\n")
        sys.exit(1)
    """
    fake_helm(tmp_path, monkeypatch, body)
    with pytest.raises(ChartError, match=r"does not render: execution error at \(t\.yaml:1:2\): timing: too short$"):
        render_chart(CHART, None)


def test_render_chart_without_any_engine_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setitem(sys.modules, "helm_python", None)
    with pytest.raises(ChartError, match=r"pip install 'shutdown-sidecar\[chart\]'.*helm"):
        render_chart(CHART, None)


def test_render_chart_without_pyyaml_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "yaml", None)
    with pytest.raises(ChartError, match=r"needs PyYAML: pip install 'shutdown-sidecar\[chart\]'$"):
        render_chart(CHART, None)
