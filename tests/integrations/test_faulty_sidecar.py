"""The app's side when its sidecar is misconfigured or stalled, on a real uvicorn process: a
$SHUTDOWN_SIDECAR_URL that is not an http:// URL is warned about once and the app serves; a
sidecar that accepts connections and never answers holds the app's stop no longer than one
report's timeout."""

from __future__ import annotations

import contextlib
import signal
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from sidecar.integrations.report_connection import TIMEOUT_SECONDS
from tests.integrations.app_server import AppServer, uvicorn_port

APP = "tests.integrations.plain_asgi_app:app"
WAIT_SECONDS = 15.0
# uvicorn's own stop (about 0.2 s here with a sidecar that answers), with room for a busy machine,
# on top of the one report's timeout the middleware may wait. (Before the bound: 1.1 s, the 1 s
# flush and the stop.)
STOP_SLACK_SECONDS = 0.45


@pytest.fixture
def start_uvicorn() -> Iterator[Callable[[str], AppServer]]:
    started: list[AppServer] = []

    def start(sidecar_url: str) -> AppServer:
        command = ("uvicorn", APP, "--host", "127.0.0.1", "--port", "0")
        server = AppServer(command, {"SHUTDOWN_SIDECAR_URL": sidecar_url})
        started.append(server)
        return server

    yield start
    for server in started:
        server.close()


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "url",
    [
        pytest.param("not a url", id="not-a-url"),
        pytest.param("https://127.0.0.1:9180", id="https"),
        pytest.param("http://127.0.0.1:99999", id="port-out-of-range"),
    ],
)
def test_faulty_sidecar_url_is_warned_about_once_and_the_app_serves(
    url: str, start_uvicorn: Callable[[str], AppServer]
) -> None:
    app = start_uvicorn(url)
    port = uvicorn_port(app)
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=WAIT_SECONDS) as client:
        for _ in range(3):
            answer = client.get("/")
            assert (answer.status_code, answer.text) == (200, "hello")
            assert "connection" not in answer.headers  # no shutdown known: nothing sidecar-related
    app.signal(signal.SIGTERM)
    assert app.wait(WAIT_SECONDS) == -signal.SIGTERM
    assert app.output.count("sidecar url unusable; serving without the sidecar") == 1, app.output
    assert "Traceback" not in app.output


@pytest.mark.timeout(60)
def test_faulty_sidecar_url_under_gunicorn_is_warned_about_and_its_workers_serve(tmp_path: Path) -> None:
    command = ["gunicorn", "-c", "python:sidecar.integrations.gunicorn", "--no-control-socket", "-w", "2"]
    command += ["-b", "127.0.0.1:0", "tests.integrations.wsgi_app:app"]
    app = AppServer(command, {"SHUTDOWN_SIDECAR_URL": "not a url", "TEST_HOLD_DIR": str(tmp_path)})
    try:
        url = app.wait_for_output(r"Listening at: (http://127\.0\.0\.1:\d+)").group(1)
        for _ in range(4):
            assert httpx.get(url, timeout=WAIT_SECONDS).status_code == 200
        app.signal(signal.SIGTERM)
        assert app.wait(WAIT_SECONDS) == 0
    finally:
        app.close()
    # Said by the master (on_starting) and by each worker: once per process, never a worker that fails to boot.
    assert "sidecar url unusable; serving without the sidecar" in app.output
    assert "Worker failed to boot" not in app.output
    assert "Traceback" not in app.output


@pytest.mark.timeout(60)
def test_faulty_sidecar_that_accepts_and_never_answers_holds_the_stop_one_report_timeout_at_most(
    start_uvicorn: Callable[[str], AppServer],
) -> None:
    # A listening socket that is never accepted from: the kernel completes each connection and
    # nothing ever answers (a sidecar stuck, or something else on its port).
    with contextlib.closing(socket.socket()) as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)
        app = start_uvicorn(f"http://127.0.0.1:{silent.getsockname()[1]}")
        port = uvicorn_port(app)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=WAIT_SECONDS) as client:
            for _ in range(3):  # in-flight reports queue up in the reporter behind tries that time out
                assert client.get("/").status_code == 200
        sent = time.monotonic()
        app.signal(signal.SIGTERM)
        assert app.wait(WAIT_SECONDS) == -signal.SIGTERM
        stop_seconds = time.monotonic() - sent
    print(f"stop with a sidecar that never answers: {stop_seconds:.3f}s")
    assert stop_seconds < TIMEOUT_SECONDS + STOP_SLACK_SECONDS, app.output
