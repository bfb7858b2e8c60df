"""SidecarMiddleware on a real uvicorn process next to a real sidecar process: the pod's shutdown
as the kubelet runs it (/prestop, then the app's SIGTERM), seen from both sides."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.e2e.sidecar_process import SidecarProcess, wait_until
from tests.integrations.app_server import AppServer, uvicorn_port

WAIT_SECONDS = 15.0


@pytest.fixture
def start_app() -> Iterator[Callable[..., AppServer]]:
    started: list[AppServer] = []

    def start(*args: str, env: dict[str, str]) -> AppServer:
        server = AppServer(args, env)
        started.append(server)
        return server

    yield start
    for server in started:
        server.close()


def app_section(sidecar: SidecarProcess) -> dict[str, Any]:
    section: dict[str, Any] = sidecar.get("/status").json()["app"] or {}
    return section


@pytest.mark.timeout(60)
def test_asgi_middleware_drains_a_real_uvicorn_app_on_the_sidecars_clock(
    start_sidecar: Callable[..., SidecarProcess], start_app: Callable[..., AppServer]
) -> None:
    sidecar = start_sidecar("--grace-period", "10", "--prestop-delay", "1")
    # Most of the budget kept in reserve: the app's never-ending background task is cancelled soon.
    env = {"SHUTDOWN_SIDECAR_URL": sidecar.url(""), "TEST_APP_RESERVE_SECONDS": "7.5"}
    app = start_app("uvicorn", "tests.integrations.asgi_app:app", "--host", "127.0.0.1", "--port", "0", env=env)
    base = f"http://127.0.0.1:{uvicorn_port(app)}"
    answers: dict[str, Any] = {}
    with httpx.Client(base_url=base, timeout=WAIT_SECONDS) as client, connect(f"ws{base[4:]}/ws") as websocket:
        assert "connection" not in client.get("/").headers
        websocket.send("hi")
        assert websocket.recv(timeout=WAIT_SECONDS) == "hi"

        def long_poll() -> None:
            answers["poll"] = httpx.get(f"{base}/until-stop", timeout=WAIT_SECONDS)

        def closed_websocket() -> None:
            try:
                websocket.recv(timeout=WAIT_SECONDS)
            except ConnectionClosed as exc:
                answers["close_code"] = None if exc.rcvd is None else exc.rcvd.code

        waiters = [threading.Thread(target=long_poll), threading.Thread(target=closed_websocket)]
        for waiter in waiters:
            waiter.start()
        wait_until(lambda: app_section(sidecar).get("inflight") == 2, WAIT_SECONDS, what="2 in flight reported")
        hook = threading.Thread(target=lambda: answers.setdefault("prestop", sidecar.post("/prestop")))
        hook.start()
        # From t0 on, each answer closes its connection: pooled clients move to other pods.
        wait_until(lambda: client.get("/").headers.get("connection") == "close", WAIT_SECONDS, what="close")
        hook.join(WAIT_SECONDS)
        for waiter in waiters:
            waiter.join(WAIT_SECONDS)
    assert answers["prestop"].status_code == 200
    assert answers["close_code"] == 1001  # closed politely at the stop, not cut by the server
    assert answers["poll"].json()["phase"] == "drain"  # the long poll ended at the stop
    assert answers["poll"].json()["deadline"] == pytest.approx(answers["prestop"].json()["deadline"], abs=0.01)

    app.signal(signal.SIGTERM)  # the kubelet's stop signal, after the hook returned
    assert app.wait(WAIT_SECONDS) == -signal.SIGTERM  # uvicorn >= 0.29 re-raises the signal it stopped for
    assert sidecar.wait(WAIT_SECONDS) == 0
    report = sidecar.report()
    assert (report["outcome"], report["drain_end_source"]) == ("clean", "app_report")
    section = report["app"]
    assert section["inflight"] == 0
    assert section["inflight_peak"] >= 2
    assert section["inflight_at_stop"] is not None
    assert section["complete_at"] is not None
    assert section["workers"] == {
        str(app.proc.pid): {"inflight": 0, "complete": True, "exited": False, "complete_at": section["complete_at"]}
    }
    assert "cancelling background tasks still running at the budget tasks=forever" in app.output
