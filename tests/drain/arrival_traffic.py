"""A one-request-per-connection app and its clients, watched by a ConnectionWatch: how many
connections arrived after t0 and how many the watch counted. Run in this process by the tests, or
as `python -m tests.drain.arrival_traffic MODE COUNT` inside a network namespace of its own."""

from __future__ import annotations

import asyncio
import json
import sys
import time

from prometheus_client import CollectorRegistry

from sidecar.drain.connections import SHUTDOWN_TICK_SECONDS, ConnectionWatch
from sidecar.telemetry.metrics import ShutdownMetrics
from sidecar.telemetry.report import Observations

RESPONSE = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"


async def count_arrivals(count: int, *, server_closes_first: bool) -> dict[str, object]:
    """Open `count` connections after t0, one request each; the server closes first (its side
    keeps TIME_WAIT) or the client does (the server's side is gone a round trip after)."""
    accepted = 0

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal accepted
        accepted += 1
        await reader.readline()
        writer.write(RESPONSE)
        await writer.drain()
        if not server_closes_first:
            await reader.read()  # until the client has closed
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    metrics = ShutdownMetrics(CollectorRegistry(), version="test", grace_period_seconds=30)
    watch = ConnectionWatch(port, metrics=metrics, observations=Observations(), on_drained=lambda: None)
    watch.start()
    watching = asyncio.create_task(watch.run())

    async def one_request() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nhost: app\r\n\r\n")
        await reader.readexactly(len(RESPONSE))
        writer.close()
        await writer.wait_closed()

    await asyncio.sleep(SHUTDOWN_TICK_SECONDS)  # the watch's first reading is the baseline
    watch.shutdown_began(time.monotonic())
    await asyncio.gather(*(one_request() for _ in range(count)))
    deadline = time.monotonic() + 5
    while watch.observations.late_connections < accepted and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(SHUTDOWN_TICK_SECONDS)  # the watch ticks; there is no event to wait on
    await asyncio.sleep(4 * SHUTDOWN_TICK_SECONDS)  # and nothing more is counted after
    watching.cancel()
    watch.close()
    server.close()
    await server.wait_closed()
    return {"accepted": accepted, "counted": watch.observations.late_connections, "counting": watch.counting}


if __name__ == "__main__":
    mode, number = sys.argv[1], int(sys.argv[2])
    print(json.dumps(asyncio.run(count_arrivals(number, server_closes_first=mode == "server"))))
