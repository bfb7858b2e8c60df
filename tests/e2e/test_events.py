"""GET /events on a real sidecar process: what an app following the stream sees of a shutdown."""

from __future__ import annotations

import json
import signal
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx

from tests.e2e.sidecar_process import SidecarProcess

StartSidecar = Callable[..., SidecarProcess]


def events_of(response: httpx.Response) -> Iterator[tuple[str, dict[str, Any]]]:
    """(event name, data) for each event of an open stream, until the server ends it."""
    name, data = "", ""
    for line in response.iter_lines():
        if line.startswith("event: "):
            name = line.removeprefix("event: ")
        elif line.startswith("data: "):
            data = line.removeprefix("data: ")
        elif not line and name:
            yield name, json.loads(data)
            name, data = "", ""


def test_events_stream_tells_t0_and_every_phase_then_ends_at_done(start_sidecar: StartSidecar) -> None:
    sidecar = start_sidecar("--grace-period", "3", "--prestop-delay", "0.5")
    seen: list[tuple[str, dict[str, Any]]] = []
    with httpx.stream("GET", sidecar.url("/events"), timeout=10) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for name, document in events_of(response):
            seen.append((name, document))
            if name == "running":
                sidecar.send_signal(signal.SIGTERM)  # t0, once the app has heard the sidecar is up
    assert [name for name, _ in seen] == ["running", "prestop_delay", "drain", "report", "done"]
    running, prestop = seen[0][1], seen[1][1]
    assert running["t0"] is None
    assert prestop["t0"] is not None
    assert prestop["deadline"] == prestop["t0"] + 3
    assert 0 < prestop["time_left_seconds"] <= 3
    assert sidecar.wait(timeout=5) == 0


def stream_status(url: str) -> int:
    """The status of a GET /events; a stream that opens is closed again at once (its slot freed)."""
    with httpx.stream("GET", url, timeout=5) as response:
        return response.status_code


def test_events_65th_stream_gets_429_and_streams_that_never_read_do_not_hold_the_exit(
    start_sidecar: StartSidecar,
) -> None:
    sidecar = start_sidecar("--grace-period", "3", "--prestop-delay", "0.2", "--report-reserve", "1")
    held = []
    try:
        for _ in range(64):  # clients that open a stream and never read a byte of it
            client = socket.create_connection(("127.0.0.1", sidecar.port))
            client.sendall(b"GET /events HTTP/1.1\r\nHost: sidecar\r\n\r\n")
            held.append(client)
        deadline = time.monotonic() + 10
        while (refused := stream_status(sidecar.url("/events"))) != 429:  # until all 64 are in
            assert time.monotonic() < deadline, f"the 65th stream was never refused ({refused})"
        sidecar.send_signal(signal.SIGTERM)
        # Exit 0, not the watchdog's 70: nothing waited for the streams past the deadline.
        assert sidecar.wait(timeout=6) == 0
    finally:
        for client in held:
            client.close()
