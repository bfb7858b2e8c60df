"""The demo app: HTTP/1.1 keep-alive answers, `Connection: close` once it stops, the drain at
SIGTERM of a real process, and `python -m sidecar.demo` as the alias of sidecar.simulate.demo_app."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from collections.abc import AsyncIterator

import pytest

import sidecar.demo
from sidecar.simulate import demo_app
from sidecar.simulate.demo_app import DemoApp, build_parser

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


def test_demo_app_parser_defaults() -> None:
    args = build_parser().parse_args([])
    assert (args.host, args.port, args.latency, args.on_sigterm, args.cleanup) == ("127.0.0.1", 8080, 0.05, "drain", 0)
    assert args.drain_report_url is None


def test_demo_alias_runs_the_demo_apps_main() -> None:
    assert sidecar.demo.main is demo_app.main


@pytest.mark.timeout(20)
def test_demo_alias_as_a_module_drains_at_sigterm_and_exits_0() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "sidecar.demo", "--port", "0", "--latency", "0"],
        stderr=subprocess.PIPE,
        text=True,
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
        process.kill()
        process.communicate()
