"""SidecarMiddleware on a real ASGI server process (uvicorn, hypercorn) next to a real sidecar
process: the pod's shutdown as the kubelet runs it (/prestop, then the app's SIGTERM), seen from
both sides."""

from __future__ import annotations

import contextlib
import dataclasses
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.e2e.sidecar_process import SidecarProcess, wait_until
from tests.integrations.app_server import AppServer, hypercorn_port, uvicorn_port

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


@dataclasses.dataclass(frozen=True)
class ASGIServer:
    args: tuple[str, ...]  # after `python -m`
    port: Callable[[AppServer], int]  # read from its output: it listens on port 0
    exit_code_at_sigterm: int
    serves_in_a_child: bool  # the app runs in a worker process the server started


APP = "tests.integrations.asgi_app:app"
# Idle keep-alive connections are kept far longer than the test waits (the defaults are 5 s): a
# connection the server closes is then closed for the `Connection: close`, not for being idle.
KEEP_ALIVE = str(int(WAIT_SECONDS * 4))
SERVERS = [
    # uvicorn >= 0.29 re-raises the signal it stopped for.
    pytest.param(
        ASGIServer(
            ("uvicorn", APP, "--host", "127.0.0.1", "--port", "0", "--timeout-keep-alive", KEEP_ALIVE),
            uvicorn_port,
            exit_code_at_sigterm=-signal.SIGTERM,
            serves_in_a_child=False,
        ),
        id="uvicorn",
    ),
    # hypercorn runs its one worker (the default) in a spawned child; the parent turns SIGTERM into
    # the worker's graceful shutdown and exits with the worker's status.
    pytest.param(
        ASGIServer(
            ("hypercorn", APP, "--bind", "127.0.0.1:0", "--keep-alive", KEEP_ALIVE),
            hypercorn_port,
            exit_code_at_sigterm=0,
            serves_in_a_child=True,
        ),
        id="hypercorn",
    ),
]


class KeptAliveConnection:
    """One HTTP/1.1 connection on a raw socket, so that the test sees what the server does with it
    (an HTTP client would close it itself on `Connection: close`)."""

    def __init__(self, port: int) -> None:
        self.socket = socket.create_connection(("127.0.0.1", port), timeout=WAIT_SECONDS)
        self.reader = self.socket.makefile("rb")

    def get(self, path: str) -> dict[str, str]:
        """The answer's headers (names in lower case), its body read to its end."""
        self.socket.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        status = self.reader.readline()
        assert status.startswith(b"HTTP/1.1 200"), status
        headers: dict[str, str] = {}
        while (line := self.reader.readline().rstrip(b"\r\n")) != b"":
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        self.reader.read(int(headers["content-length"]))
        return headers

    def is_closed_by_server(self) -> bool:
        """True when the server closes it (end of stream) within WAIT_SECONDS; TimeoutError if not."""
        return self.reader.read(1) == b""

    def close(self) -> None:
        self.reader.close()
        self.socket.close()


def parent_pid(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1])


def app_section(sidecar: SidecarProcess) -> dict[str, Any]:
    section: dict[str, Any] = sidecar.get("/status").json()["app"] or {}
    return section


@pytest.mark.timeout(60)
@pytest.mark.parametrize("server", SERVERS)
def test_asgi_middleware_drains_a_real_server_on_the_sidecars_clock(
    server: ASGIServer, start_sidecar: Callable[..., SidecarProcess], start_app: Callable[..., AppServer]
) -> None:
    sidecar = start_sidecar("--grace-period", "10", "--prestop-delay", "1")
    env = {"SHUTDOWN_SIDECAR_URL": sidecar.url("")}
    app = start_app(*server.args, env=env)
    port = server.port(app)
    base = f"http://127.0.0.1:{port}"
    answers: dict[str, Any] = {}
    with (
        httpx.Client(base_url=base, timeout=WAIT_SECONDS) as client,
        connect(f"ws{base[4:]}/ws") as websocket,
        contextlib.closing(KeptAliveConnection(port)) as pooled,
    ):
        assert "connection" not in client.get("/").headers
        assert "connection" not in pooled.get("/")  # kept alive, then idle through t0
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
        workers = wait_until(lambda: app_section(sidecar).get("workers"), WAIT_SECONDS, what="the worker's report")
        wait_until(lambda: app_section(sidecar).get("inflight") == 2, WAIT_SECONDS, what="2 in flight reported")
        hook = threading.Thread(target=lambda: answers.setdefault("prestop", sidecar.post("/prestop")))
        hook.start()
        # From t0 on, each answer closes its connection: pooled clients move to other pods. (Polled
        # gently: hypercorn itself closes a connection after 1,000 requests.)
        wait_until(lambda: client.get("/").headers.get("connection") == "close", WAIT_SECONDS, 0.05, what="close")
        # The app knows t0 now: the connection kept from before it gets `close` on its next answer,
        # and the server closes it then, for that header (no stop signal yet, keep-alive far off).
        assert pooled.get("/").get("connection") == "close"
        assert pooled.is_closed_by_server()
        hook.join(WAIT_SECONDS)
        for waiter in waiters:
            waiter.join(WAIT_SECONDS)
    assert answers["prestop"].status_code == 200
    assert answers["close_code"] == 1001  # closed politely at the stop, not cut by the server
    assert answers["poll"].json()["phase"] == "drain"  # the long poll ended at the stop
    assert answers["poll"].json()["deadline"] == pytest.approx(answers["prestop"].json()["deadline"], abs=0.01)
    [worker] = workers
    assert (parent_pid(int(worker)) if server.serves_in_a_child else int(worker)) == app.proc.pid

    app.signal(signal.SIGTERM)  # the kubelet's stop signal, after the hook returned
    assert app.wait(WAIT_SECONDS) == server.exit_code_at_sigterm
    assert sidecar.wait(WAIT_SECONDS) == 0
    report = sidecar.report()
    assert (report["outcome"], report["drain_end_source"]) == ("clean", "app_report")
    section = report["app"]
    assert section["inflight"] == 0
    assert section["inflight_peak"] >= 2
    assert section["inflight_at_stop"] is not None
    assert section["complete_at"] is not None
    # `exited`: whether the worker's exit (right after its `complete`, which ended the drain) was
    # seen before the report was made is a race the report need not win; `complete` is the point.
    [(reported_worker, state)] = section["workers"].items()
    assert reported_worker == worker
    assert isinstance(state.pop("exited"), bool)
    assert state == {"inflight": 0, "complete": True, "complete_at": section["complete_at"]}
    assert "cancelling background tasks still running tasks=forever" in app.output
    assert (section["tasks"]["finished"], section["tasks"]["cancelled"]) == ([], ["forever"])
