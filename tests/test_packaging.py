"""The release artefacts, built as the release workflow builds them (`python -m build`), and the
app-side install measured as an app's image would meet it: `pip install shutdown-sidecar` into a
virtual environment that already holds an app adds no distribution and moves no version (pip's own
view: `pip list`, `pip check`), and the integrations import there; the sidecar's modes say which
install they need. Marker `packaging`: fresh venvs and PyPI, about a minute (CI runs it)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SERVER_INSTALL = "pip install 'shutdown-sidecar[server]'"
INTEGRATIONS = ("asgi", "wsgi", "gunicorn", "celery", "lifespan", "events", "reporter", "follower")
# The app of the issue: FastAPI on uvicorn 0.55, a Django and a Flask app under gunicorn, Celery,
# each at its current release (uvicorn held at the minor the issue names).
APP_REQUIREMENTS = ("uvicorn==0.55.*", "fastapi", "starlette", "django", "flask", "gunicorn", "celery")

pytestmark = [pytest.mark.packaging, pytest.mark.timeout(600)]


def run(*command: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(part) for part in command],
        cwd=cwd, capture_output=True, text=True, timeout=480, check=False,
        env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )  # fmt: skip
    assert result.returncode == 0, f"{command}: {result.stdout}{result.stderr}"
    return result


@pytest.fixture(scope="session")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """sdist and wheel, built once from a copy of what the sdist is made of (the working tree is
    left as found: no egg-info, no build/)."""
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md", "LICENSE", "MANIFEST.in"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "sidecar", source / "sidecar", ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path_factory.mktemp("dist")
    run(sys.executable, "-m", "build", "--outdir", out, source)
    return out


def wheel(dist: Path) -> Path:
    [built] = dist.glob("shutdown_sidecar-*-py3-none-any.whl")
    return built


def sdist(dist: Path) -> Path:
    [built] = dist.glob("shutdown_sidecar-*.tar.gz")
    return built


def make_venv(path: Path) -> Path:
    run(sys.executable, "-m", "venv", path)
    return path / "bin" / "python"


def installed(python: Path) -> dict[str, str]:
    listed = json.loads(run(python, "-m", "pip", "list", "--format=json").stdout)
    return {entry["name"].lower(): entry["version"] for entry in listed}


def test_packaging_artefacts_pass_twine_check_strict(dist: Path) -> None:
    result = run(sys.executable, "-m", "twine", "check", "--strict", wheel(dist), sdist(dist))
    assert result.stdout.count("PASSED") == 2, result.stdout


def test_packaging_wheel_holds_the_package_typed_and_nothing_else(dist: Path) -> None:
    names = zipfile.ZipFile(wheel(dist)).namelist()
    assert "sidecar/py.typed" in names
    assert "sidecar/integrations/asgi.py" in names
    outside = [name for name in names if not name.startswith(("sidecar/", "shutdown_sidecar-"))]
    assert outside == []
    assert not [name for name in names if "test" in name.split("/")[0] or name.endswith((".yaml", ".tgz"))]


def test_packaging_sdist_holds_the_source_and_no_tests(dist: Path) -> None:
    with tarfile.open(sdist(dist)) as archive:
        names = [name.split("/", 1)[1] for name in archive.getnames() if "/" in name]
    assert {"pyproject.toml", "README.md", "LICENSE", "sidecar/py.typed", "sidecar/cli.py"} <= set(names)
    assert not [name for name in names if name.startswith(("tests", "charts", ".github"))]


def test_packaging_metadata_requires_nothing_unless_the_server_extra_is_asked_for(dist: Path) -> None:
    with zipfile.ZipFile(wheel(dist)) as archive:
        [name] = [name for name in archive.namelist() if name.endswith(".dist-info/METADATA")]
        metadata = Parser().parsestr(archive.read(name).decode())
    requirements = metadata.get_all("Requires-Dist") or []
    assert [requirement for requirement in requirements if "extra ==" not in requirement] == []
    assert any(requirement.startswith("uvicorn") and 'extra == "server"' in requirement for requirement in requirements)
    assert "server" in (metadata.get_all("Provides-Extra") or [])
    urls = {url.split(",")[0] for url in metadata.get_all("Project-URL") or []}
    assert {"Homepage", "Source", "Issues", "Changelog", "Documentation"} <= urls
    assert "Typing :: Typed" in (metadata.get_all("Classifier") or [])
    assert metadata["License-Expression"] == "Apache-2.0"
    assert (
        metadata["Requires-Python"]
        == tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    )


def assert_modes_need_the_server_extra(venv: Path) -> None:
    """Each mode exits 2 with one line naming the install; --version and --help need nothing."""
    console = venv / "bin" / "shutdown-sidecar"
    for command in (["serve"], ["run", "--", "true"], ["simulate"]):
        result = subprocess.run([console, *command], capture_output=True, text=True, timeout=30, check=False)
        assert result.returncode == 2, result.stderr
        [line] = result.stderr.splitlines()
        assert line.startswith(f"shutdown-sidecar: error: {command[0]} needs the server dependencies"), line
        assert line.endswith(SERVER_INSTALL), line
    for command in (["--version"], ["serve", "--help"], ["simulate", "--help"]):
        result = subprocess.run([console, *command], capture_output=True, text=True, timeout=30, check=False)
        assert result.returncode == 0, result.stderr
        assert result.stderr == ""


def test_packaging_bare_install_imports_the_integrations_without_the_server_stack(dist: Path, tmp_path: Path) -> None:
    python = make_venv(tmp_path / "bare")
    before = installed(python)
    run(python, "-m", "pip", "install", "--no-index", wheel(dist))  # no index: nothing else could come
    assert set(installed(python)) - set(before) == {"shutdown-sidecar"}
    modules = ", ".join(f"sidecar.integrations.{name}" for name in INTEGRATIONS)
    code = f"import json, sys, sidecar, {modules}; print(json.dumps(sorted(sys.modules)))"
    loaded = json.loads(run(python, "-c", code).stdout)
    server = ("starlette", "uvicorn", "httptools", "prometheus_client", "opentelemetry", "celery", "gunicorn")
    assert [name for name in loaded if name.split(".")[0] in server] == []
    assert_modes_need_the_server_extra(python.parent.parent)


def test_packaging_app_side_install_adds_nothing_to_an_app_and_moves_no_version(dist: Path, tmp_path: Path) -> None:
    python = make_venv(tmp_path / "app")
    run(python, "-m", "pip", "install", "--quiet", *APP_REQUIREMENTS)
    before = installed(python)
    assert before["uvicorn"].startswith("0.55.")
    # The index stays on: were a dependency declared, pip would fetch it and the comparison catch it.
    run(python, "-m", "pip", "install", wheel(dist))
    after = installed(python)
    assert {name: version for name, version in after.items() if name != "shutdown-sidecar"} == before
    assert set(after) - set(before) == {"shutdown-sidecar"}
    run(python, "-m", "pip", "check")
    imports = [
        "from sidecar.integrations.asgi import SidecarMiddleware",
        "from sidecar.integrations.wsgi import SidecarWSGIMiddleware",
        "from sidecar.integrations.lifespan import BackgroundTasks",
        "from sidecar.integrations import gunicorn, celery",
        "import fastapi; SidecarMiddleware(fastapi.FastAPI())",
    ]
    run(python, "-c", "; ".join(imports))
    assert_modes_need_the_server_extra(python.parent.parent)
