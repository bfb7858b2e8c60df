"""The README's wiring of the integrations, run as written: each block of its "Python app
integrations" section (FastAPI, Django, Flask under gunicorn, Celery) is written to a project
of its own, served by the real server next to a real sidecar, and the pod's shutdown (/prestop,
then SIGTERM) must end with the app's completion report: outcome clean, source app_report."""

from __future__ import annotations

import shlex
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.e2e.sidecar_process import SidecarProcess, wait_until
from tests.integrations.app_server import AppServer, uvicorn_port

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()
WAIT_SECONDS = 20.0
README_BROKER = "redis://localhost:6379/0"


def readme_block(language: str, first_line: str) -> str:
    """The README's fenced `language` block whose first line starts with `first_line` (dedented:
    a block in a list item is indented)."""
    blocks = [textwrap.dedent(block.split("```", 1)[0]) for block in README.split(f"```{language}\n")[1:]]
    found = [block for block in blocks if block.startswith(first_line)]
    assert len(found) == 1, f"{len(found)} README blocks start with {first_line!r}"
    return found[0]


def app_report_seen(sidecar: SidecarProcess) -> bool:
    return sidecar.get("/status").json()["app"] is not None


def shut_down_the_pod(sidecar: SidecarProcess, app: AppServer, url: str, *, closes_at_t0: bool) -> None:
    """The kubelet's order: the preStop hook (/prestop), then SIGTERM; `closes_at_t0`: an answer
    from t0 says `Connection: close` (ASGI; gunicorn drops the header and closes itself)."""
    with httpx.Client(base_url=url, timeout=WAIT_SECONDS) as client:
        assert client.get("/").status_code == 200
        wait_until(lambda: app_report_seen(sidecar), WAIT_SECONDS, what="the app's first report")
        hook = threading.Thread(target=lambda: sidecar.post("/prestop"))
        hook.start()
        if closes_at_t0:
            wait_until(lambda: client.get("/").headers.get("connection") == "close", WAIT_SECONDS, 0.05, what="close")
        hook.join(WAIT_SECONDS)
    app.signal(signal.SIGTERM)
    app.wait(WAIT_SECONDS)
    assert sidecar.wait(WAIT_SECONDS) == 0


def uvicorn_in(directory: Path, app_path: str, sidecar: SidecarProcess) -> AppServer:
    command = ["uvicorn", app_path, "--app-dir", str(directory), "--host", "127.0.0.1", "--port", "0"]
    return AppServer(command, {"SHUTDOWN_SIDECAR_URL": sidecar.url("")})


def shut_down_uvicorn_pod(sidecar: SidecarProcess, directory: Path, app_path: str) -> AppServer:
    """`app_path` served by uvicorn from `directory`, through the pod's shutdown; the app, stopped."""
    app = uvicorn_in(directory, app_path, sidecar)
    try:
        shut_down_the_pod(sidecar, app, f"http://127.0.0.1:{uvicorn_port(app)}", closes_at_t0=True)
    finally:
        app.close()
    return app


def assert_completion_reported(sidecar: SidecarProcess, app: AppServer) -> None:
    report = sidecar.report()
    assert (report["outcome"], report["drain_end_source"]) == ("clean", "app_report"), app.output
    assert report["app"]["complete_at"] is not None


@pytest.mark.timeout(90)
def test_readme_wiring_fastapi_add_middleware(start_sidecar: Callable[..., SidecarProcess], tmp_path: Path) -> None:
    (tmp_path / "main.py").write_text(readme_block("python", "# main.py: FastAPI"))
    sidecar = start_sidecar("--grace-period", "10", "--prestop-delay", "1")
    app = shut_down_uvicorn_pod(sidecar, tmp_path, "main:app")
    assert_completion_reported(sidecar, app)


@pytest.mark.timeout(90)
def test_readme_wiring_lifespan_background_tasks_the_loop_cancelled_soon_and_reported(
    start_sidecar: Callable[..., SidecarProcess], tmp_path: Path
) -> None:
    (tmp_path / "background.py").write_text(readme_block("python", "# background.py: background tasks"))
    sidecar = start_sidecar("--grace-period", "30", "--prestop-delay", "1")
    app = uvicorn_in(tmp_path, "background:app", sidecar)
    try:
        url = f"http://127.0.0.1:{uvicorn_port(app)}"
        wait_until(lambda: httpx.get(url, timeout=WAIT_SECONDS).status_code == 404, WAIT_SECONDS, what="serving")
        assert sidecar.post("/prestop").status_code == 200
        sent = time.monotonic()
        app.signal(signal.SIGTERM)
        app.wait(WAIT_SECONDS + 10)
        stop_seconds = time.monotonic() - sent
        assert sidecar.wait(WAIT_SECONDS) == 0
    finally:
        app.close()
    assert_completion_reported(sidecar, app)
    # The loop was cancelled after the short wait, not at 80% of the ~28 s budget.
    assert stop_seconds < 8, app.output
    # As the README says: upload-batch ended long before the shutdown; the loop waited its 1 s.
    tasks = sidecar.report()["app"]["tasks"]
    assert (tasks["finished"], tasks["cancelled"], tasks["stuck"]) == ([], ["refresh-cache"], [])
    assert 1.0 <= tasks["waited_seconds"] < 5.0  # drain()'s 1 s, not 80% of the ~28 s budget


@pytest.mark.timeout(90)
def test_readme_wiring_django_asgi_py_reports_completion_though_django_refuses_lifespan(
    start_sidecar: Callable[..., SidecarProcess], tmp_path: Path
) -> None:
    # A real Django project, as `django-admin startproject` makes it, with a view and the README's asgi.py.
    subprocess.run([sys.executable, "-m", "django", "startproject", "mysite", str(tmp_path)], check=True)
    (tmp_path / "mysite" / "urls.py").write_text(
        "from django.http import HttpResponse\nfrom django.urls import path\n\n"
        'urlpatterns = [path("", lambda request: HttpResponse("hello"))]\n'
    )
    (tmp_path / "mysite" / "asgi.py").write_text(readme_block("python", "# mysite/asgi.py: Django"))
    sidecar = start_sidecar("--grace-period", "10", "--prestop-delay", "1")
    app = shut_down_uvicorn_pod(sidecar, tmp_path, "mysite.asgi:application")
    assert_completion_reported(sidecar, app)
    assert "ASGI 'lifespan' protocol appears unsupported" not in app.output  # answered by the middleware


@pytest.mark.timeout(90)
def test_readme_wiring_flask_under_gunicorn(start_sidecar: Callable[..., SidecarProcess], tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(readme_block("python", "# app.py: Flask"))
    *command, app_name = shlex.split(readme_block("sh", "gunicorn -c python:sidecar.integrations.gunicorn"))
    sidecar = start_sidecar("--grace-period", "10", "--prestop-delay", "1")
    test_flags = ["--chdir", str(tmp_path), "-b", "127.0.0.1:0", "--no-control-socket"]
    app = AppServer([*command, *test_flags, app_name], {"SHUTDOWN_SIDECAR_URL": sidecar.url("")})
    try:
        url = app.wait_for_output(r"Listening at: (http://127\.0\.0\.1:\d+)").group(1)
        shut_down_the_pod(sidecar, app, url, closes_at_t0=False)
    finally:
        app.close()
    assert_completion_reported(sidecar, app)


@pytest.mark.celery
@pytest.mark.timeout(90)
def test_readme_wiring_celery_connect(
    redis_url: str, start_sidecar: Callable[..., SidecarProcess], tmp_path: Path
) -> None:
    block = readme_block("python", "# tasks.py: Celery")
    assert README_BROKER in block
    (tmp_path / "tasks.py").write_text(block.replace(README_BROKER, redis_url))
    sidecar = start_sidecar("--grace-period", "10", "--prestop-delay", "1")
    command = ["celery", "--workdir", str(tmp_path), "-A", "tasks", "worker", "--pool", "solo"]
    flags = ["--loglevel", "info", "--without-gossip", "--without-mingle"]
    worker = AppServer([*command, *flags], {"SHUTDOWN_SIDECAR_URL": sidecar.url("")})
    try:
        worker.wait_for_output(r"celery@\S+ ready", WAIT_SECONDS)
        wait_until(lambda: app_report_seen(sidecar), WAIT_SECONDS, what="the worker's first report")
        assert sidecar.post("/prestop").status_code == 200
        worker.signal(signal.SIGTERM)
        assert worker.wait(WAIT_SECONDS) == 0
        assert sidecar.wait(WAIT_SECONDS) == 0
    finally:
        worker.close()
    assert_completion_reported(sidecar, worker)
