"""The demo app: HTTP/1.1 keep-alive answers, `Connection: close` once it stops or its sidecar's
events say shutdown started (a stand-in event stream here), the drain at SIGTERM of a real
process, a sidecar that cannot be reached, and `python -m sidecar.demo` as the alias of
sidecar.simulate.demo_app."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import AsyncIterator

import pytest

import sidecar.demo
from sidecar.simulate import demo_app
from sidecar.simulate.demo_app import DemoApp, build_parser, follow_sidecar_events
from tests.e2e.process_tree import end_session
from tests.simulate.event_stream_server import EventStreamServer, event_stream
from tests.simulate.loopback_server import closed_port
from tests.simulate.waiting import wait_until

START_TIMEOUT_SECONDS = 10.0


@pytest.fixture
async def demo_server() -> AsyncIterator[tuple[DemoApp, int]]:
    app = DemoApp(latency_seconds=0.0)
    server = await asyncio.start_server(app.handle, "127.0.0.1", 0)
    try:
        yield app, server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for writer in list(app.connections):
            writer.close()
        await server.wait_closed()


async def get(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    async with asyncio.timeout(5):
        head = await reader.readuntil(b"\r\n\r\n")
        await reader.readexactly(3)  # the body: ok\n
    return head.lower()


@pytest.mark.anyio
async def test_demo_app_keeps_the_connection_alive_until_it_stops(demo_server: tuple[DemoApp, int]) -> None:
    app, port = demo_server
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        assert b"connection: keep-alive" in await get(reader, writer)
        assert b"connection: keep-alive" in await get(reader, writer)  # the same connection, again
        app.stopping = True
        assert b"connection: close" in await get(reader, writer)
        assert app.served == 3
        assert app.idle.is_set()
    finally:
        writer.close()


@pytest.mark.anyio
async def test_demo_app_answers_connection_close_from_t0_when_its_event_stream_says_so(
    demo_server: tuple[DemoApp, int],
) -> None:
    app, port = demo_server
    async with event_stream(EventStreamServer()) as sidecar:
        follower = follow_sidecar_events(sidecar.url, app)
        assert follower is not None
        sidecar.push("running")
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            assert b"connection: keep-alive" in await get(reader, writer)
            sidecar.push("prestop_delay")  # t0: the sidecar's readiness fails; the app still serves
            await asyncio.wait_for(app.shutdown_started.wait(), START_TIMEOUT_SECONDS)
            assert b"connection: close" in await get(reader, writer)
            async with asyncio.timeout(START_TIMEOUT_SECONDS):
                assert await reader.read() == b"", "the app closed the connection after its answer"
            assert not app.stopping, "still serving: only the connections move"
        finally:
            writer.close()
            sidecar.push("done")
            await asyncio.wait_for(follower, START_TIMEOUT_SECONDS)


@pytest.mark.anyio
async def test_demo_app_close_idle_connections_leaves_a_request_in_flight_to_finish() -> None:
    app = DemoApp(latency_seconds=0.2)
    server = await asyncio.start_server(app.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    idle_reader, idle_writer = await asyncio.open_connection("127.0.0.1", port)
    busy_reader, busy_writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        busy_writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        await busy_writer.drain()
        await wait_until(lambda: app.inflight, START_TIMEOUT_SECONDS)  # the app sends no event for it
        app.stopping = True
        app.close_idle_connections()
        async with asyncio.timeout(START_TIMEOUT_SECONDS):
            assert await idle_reader.read() == b""
            head = await busy_reader.readuntil(b"\r\n\r\n")
        assert b"200 OK" in head
        assert b"connection: close" in head.lower()
    finally:
        idle_writer.close()
        busy_writer.close()
        server.close()
        await server.wait_closed()


def test_demo_app_parser_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SHUTDOWN_SIDECAR_URL", raising=False)
    args = build_parser().parse_args([])
    assert (args.host, args.port, args.latency, args.on_sigterm, args.cleanup) == ("127.0.0.1", 8080, 0.05, "drain", 0)
    assert args.drain_report_url is None
    assert args.sidecar_url == ""  # no events followed


def test_demo_app_parser_takes_the_sidecar_url_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHUTDOWN_SIDECAR_URL", "http://127.0.0.1:9180")
    assert build_parser().parse_args([]).sidecar_url == "http://127.0.0.1:9180"
    assert build_parser().parse_args(["--sidecar-url", ""]).sidecar_url == ""


def test_demo_alias_runs_the_demo_apps_main() -> None:
    assert sidecar.demo.main is demo_app.main


@pytest.mark.timeout(20)
def test_demo_alias_as_a_module_drains_at_sigterm_and_exits_0() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "sidecar.demo", "--port", "0", "--latency", "0"],
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert process.stderr is not None
        # The first line is the start-up log; readline returns at the latest when the process ends.
        listening = json.loads(process.stderr.readline())
        assert listening["msg"] == "demo listening"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=START_TIMEOUT_SECONDS) == 0
        messages = [json.loads(line)["msg"] for line in process.stderr.read().splitlines()]
        assert messages == ["demo stopping", "demo stopped"]
    finally:
        end_session(process)
        process.communicate()


@pytest.mark.timeout(30)
def test_demo_app_with_an_unreachable_sidecar_serves_logs_one_warning_and_drains() -> None:
    env = {**os.environ, "SHUTDOWN_SIDECAR_URL": f"http://127.0.0.1:{closed_port()}"}
    process = subprocess.Popen(
        [sys.executable, "-m", "sidecar.demo", "--port", "0", "--latency", "0"],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    try:
        assert process.stderr is not None
        listening = json.loads(process.stderr.readline())
        warning = json.loads(process.stderr.readline())  # the follower's first attempt is refused
        assert warning["msg"] == "sidecar events unavailable; serving without them"
        assert warning["level"] == "warning"
        with urllib.request.urlopen(f"http://127.0.0.1:{listening['port']}/", timeout=5) as response:
            assert response.status == 200
            assert response.headers["connection"] == "keep-alive"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=START_TIMEOUT_SECONDS) == 0
        messages = [json.loads(line)["msg"] for line in process.stderr.read().splitlines()]
        assert messages == ["demo stopping", "demo stopped"]  # no second warning while retrying
    finally:
        end_session(process)
        process.communicate()


@pytest.mark.timeout(20)
def test_demo_app_on_the_dual_stack_host_answers_ipv4_and_ipv6() -> None:
    # The chart runs the demo with --host=:: as the sidecar's default: the kubelet's IPv4 probes
    # and an IPv6 cluster's traffic reach the same socket.
    process = subprocess.Popen(
        [sys.executable, "-m", "sidecar.demo", "--host", "::", "--port", "0", "--latency", "0"],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "SHUTDOWN_SIDECAR_URL": ""},
        start_new_session=True,
    )
    try:
        assert process.stderr is not None
        port = json.loads(process.stderr.readline())["port"]
        for address in ("127.0.0.1", "[::1]"):
            with urllib.request.urlopen(f"http://{address}:{port}/", timeout=5) as response:
                assert response.status == 200, address
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=START_TIMEOUT_SECONDS) == 0
    finally:
        end_session(process)
        process.communicate()
