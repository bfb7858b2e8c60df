"""The cost of watching --app-port: the sidecar's CPU and RSS idle and at 500 new connections a
second (one request each, the server closing first), and how many of them it counted. Printed,
never asserted.

    pytest tests/benchmarks -m benchmark -s -p no:cacheprovider -k arrivals

BENCH_SIDECAR_PATH=/path/to/another/checkout measures that tree's sidecar instead (before/after)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from tests.benchmarks.test_serve_benchmark import cpu_seconds, report, rss_mb
from tests.e2e.process_tree import end_session
from tests.e2e.sidecar_process import SidecarProcess
from tests.e2e.test_run import free_port

pytestmark = [pytest.mark.benchmark, pytest.mark.timeout(300)]
SECONDS = 20.0
RATE = 500
POOLED = 1500  # open connections held through the second idle phase: 3,000 sockets, as in issue #21

# One request per connection, the server closing first; it prints how many it accepted at exit.
APP = """
import asyncio, signal, sys
accepted = 0
async def answer(reader, writer):
    global accepted
    accepted += 1
    await reader.readline()
    writer.write(b"HTTP/1.1 200 OK\\r\\ncontent-length: 2\\r\\nconnection: close\\r\\n\\r\\nok")
    await writer.drain()
    writer.close()
async def main():
    server = await asyncio.start_server(answer, "127.0.0.1", int(sys.argv[1]), backlog=4096)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print("listening", flush=True)
    await stop.wait()
    print(accepted, flush=True)
asyncio.run(main())
"""

# RATE connections a second for SECONDS, paced; prints how many it opened.
LOAD = """
import asyncio, sys, time
port, rate, seconds = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
async def one():
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\\r\\nhost: app\\r\\n\\r\\n")
        await reader.read()
        writer.close()
    except OSError:
        pass
async def main():
    start, sent, tasks = time.monotonic(), 0, set()
    while time.monotonic() - start < seconds:
        task = asyncio.create_task(one()); tasks.add(task); task.add_done_callback(tasks.discard)
        sent += 1
        await asyncio.sleep(max(0.0, start + sent / rate - time.monotonic()))
    await asyncio.gather(*tasks)
    print(sent, flush=True)
asyncio.run(main())
"""


def hold_open(port: int, count: int) -> list[socket.socket]:
    return [socket.create_connection(("127.0.0.1", port)) for _ in range(count)]


def cpu_share(pid: int, seconds: float) -> float:
    before = cpu_seconds(pid)
    time.sleep(seconds)
    return (cpu_seconds(pid) - before) / seconds


def sidecar_env() -> dict[str, str]:
    other = os.environ.get("BENCH_SIDECAR_PATH")
    return {"PYTHONPATH": other} if other else {}


def test_benchmark_arrivals_cost_idle_and_at_500_connections_a_second() -> None:
    port = free_port()
    app = subprocess.Popen(
        [sys.executable, "-c", APP, str(port)], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    assert app.stdout is not None
    assert app.stdout.readline().strip() == "listening"
    sidecar = SidecarProcess.serve(
        "--grace-period", "120", "--prestop-delay", "60", "--app-port", str(port), env=sidecar_env()
    )
    try:
        time.sleep(2.0)  # start-up settles
        idle = cpu_share(sidecar.proc.pid, SECONDS)
        pooled = hold_open(port, POOLED)
        time.sleep(2.0)
        idle_pooled = cpu_share(sidecar.proc.pid, SECONDS)
        for client in pooled:
            client.close()
        before = cpu_seconds(sidecar.proc.pid)
        load = subprocess.run(
            [sys.executable, "-c", LOAD, str(port), str(RATE), str(SECONDS)], capture_output=True, text=True, check=True
        )
        loaded = (cpu_seconds(sidecar.proc.pid) - before) / SECONDS
        rss = rss_mb(sidecar.proc.pid)
        time.sleep(1.0)  # the counter is read a tick behind (0.25 s before t0): let it catch up
        counted = sidecar.get("/metrics").text.partition("\nsidecar_app_arrivals_total ")[2].partition("\n")[0]
        with open("/proc/net/tcp") as table:
            sockets = len(table.readlines()) - 1
        app.send_signal(signal.SIGTERM)
        accepted = app.stdout.readline().strip()  # what the app accepted: the true count
        report(
            f"sidecar watching --app-port ({sockets} IPv4 sockets in the namespace; {SECONDS:g} s each)",
            [
                ("idle CPU", f"{idle * 100:.2f} % core", "~0"),
                (f"idle CPU, {POOLED} idle connections open", f"{idle_pooled * 100:.2f} % core", "~0"),
                (f"CPU at {RATE} new connections/s ({load.stdout.strip()} sent)", f"{loaded * 100:.2f} % core", "-"),
                ("RSS after the load", f"{rss:.1f} MB", "-"),
                (
                    "arrivals counted (sidecar_app_arrivals_total)",
                    counted or "(no such metric)",
                    f"= {accepted} accepted by the app",
                ),
            ],
        )
        for line in sidecar.lines:
            if line.get("level") == "warning":
                print("  sidecar warned:", line)
    finally:
        end_session(app)
        app.stdout.close()
        sidecar.close()
