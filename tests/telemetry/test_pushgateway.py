from __future__ import annotations

import dataclasses
import http.server
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry, Gauge, generate_latest

from sidecar.telemetry.pushgateway import JOB, grouping_key, pushgateway_sink


@dataclasses.dataclass
class Push:
    method: str
    path: str
    content_type: str | None
    body: bytes


class RecordingHandler(http.server.BaseHTTPRequestHandler):
    pushes: list[Push]  # set on a subclass per server

    def do_PUT(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.pushes.append(Push("PUT", self.path, self.headers.get("Content-Type"), body))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_POST = do_PUT

    def log_message(self, format: str, *args: object) -> None:
        pass  # keep the test output clean


@pytest.fixture
def pushgateway() -> Iterator[tuple[str, list[Push]]]:
    """A real loopback HTTP server standing in for a Pushgateway: its URL and what it received."""
    pushes: list[Push] = []
    handler = type("Handler", (RecordingHandler,), {"pushes": pushes})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", pushes
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


@pytest.fixture
def silent_url() -> Iterator[str]:
    """A listener that accepts connections (the kernel's backlog) and never answers."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield f"http://127.0.0.1:{server.getsockname()[1]}"


def registry_with_a_value() -> CollectorRegistry:
    registry = CollectorRegistry()
    Gauge("sidecar_test_margin_seconds", "test", registry=registry).set(7.5)
    return registry


@pytest.mark.parametrize(
    ("namespace", "workload", "expected"),
    [
        pytest.param("shop", "web", {"namespace": "shop", "workload": "web"}, id="given"),
        pytest.param(None, None, {"namespace": "unknown", "workload": "unknown"}, id="none"),
        pytest.param("", "", {"namespace": "unknown", "workload": "unknown"}, id="empty"),
        pytest.param("shop", None, {"namespace": "shop", "workload": "unknown"}, id="no-workload"),
    ],
)
def test_pushgateway_grouping_key_defaults_to_unknown(
    namespace: str | None, workload: str | None, expected: dict[str, str]
) -> None:
    assert grouping_key(namespace, workload) == expected


def test_pushgateway_sink_puts_the_registry_under_job_namespace_and_workload(
    pushgateway: tuple[str, list[Push]],
) -> None:
    url, pushes = pushgateway
    registry = registry_with_a_value()
    sink = pushgateway_sink(url, registry, grouping_key("shop", "web"), time.monotonic() + 30)
    sink({"outcome": "clean"})
    [push] = pushes
    assert JOB == "shutdown-sidecar"
    assert push.method == "PUT", "PUT replaces the group; POST would keep stale series"
    assert push.path == "/metrics/job/shutdown-sidecar/namespace/shop/workload/web"
    assert push.body == generate_latest(registry)
    assert b"sidecar_test_margin_seconds 7.5" in push.body
    assert push.content_type is not None
    assert push.content_type.startswith("text/plain")


def test_pushgateway_sink_gives_up_on_a_server_that_never_answers(silent_url: str) -> None:
    sink = pushgateway_sink(silent_url, registry_with_a_value(), grouping_key("shop", "web"), time.monotonic() + 0.3)
    failures: list[BaseException] = []

    def push() -> None:
        try:
            sink({})
        except BaseException as exc:  # handed to the test's thread
            failures.append(exc)

    # In a thread, so that a push without a timeout fails this test instead of hanging it.
    thread = threading.Thread(target=push, daemon=True)
    thread.start()
    thread.join(10)
    assert not thread.is_alive(), "the push outlived its deadline"
    [failure] = failures
    assert isinstance(failure, TimeoutError), failure  # connected (the backlog), then no answer in time
