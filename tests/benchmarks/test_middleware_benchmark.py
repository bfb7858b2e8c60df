"""SidecarMiddleware's cost on a hello-world app, printed, never asserted (a loaded CI machine must
not fail the build): the same uvicorn app with and without it, in one run on the same machine.

    pytest tests/benchmarks/test_middleware_benchmark.py -m benchmark -s -p no:cacheprovider

Needs `wrk` (Debian package) for requests per second; the per-request time is measured in-process."""

from __future__ import annotations

import os
import re
import shutil
import statistics
import subprocess
import time
from typing import Any

import pytest

from sidecar.simulate.asgi_app import build_app
from tests.e2e.sidecar_process import SidecarProcess
from tests.integrations.app_server import AppServer

pytestmark = [pytest.mark.benchmark, pytest.mark.timeout(600)]
ROUNDS = 5  # alternated, so a slow patch of the machine hits both
CALLS = 50_000


async def call_per_second(app: Any) -> float:
    """Seconds per request through the ASGI callable alone: no server, no socket."""
    scope = {"type": "http", "http_version": "1.1", "method": "GET", "path": "/", "headers": []}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: Any) -> None:
        pass

    started = time.perf_counter()
    for _ in range(CALLS):
        await app(dict(scope), receive, send)
    return (time.perf_counter() - started) / CALLS


@pytest.mark.anyio
async def test_benchmark_middleware_time_per_request_in_process() -> None:
    plain, wrapped = build_app(0, middleware=False), build_app(0, middleware=True)
    times: dict[str, list[float]] = {"plain": [], "middleware": []}
    for _ in range(ROUNDS):
        times["plain"].append(await call_per_second(plain))
        times["middleware"].append(await call_per_second(wrapped))
    best = {name: min(values) for name, values in times.items()}
    extra = (best["middleware"] - best["plain"]) * 1e6
    print(
        f"\nper request in process (Starlette hello, best of {ROUNDS} x {CALLS}): plain {best['plain'] * 1e6:.2f} us, "
        f"with SidecarMiddleware {best['middleware'] * 1e6:.2f} us: +{extra:.2f} us (goal < 5 us)"
    )


# The server on one core, wrk (and the sidecar) on the other: on 2 shared cores, which of them the
# scheduler favoured decided more than the middleware did (plain and wrapped swapped places).
SERVER_CPUS = {0}
CLIENT_CPUS = {1}


def requests_per_second(url: str, wrk: str) -> float:
    with subprocess.Popen([wrk, "-t1", "-c16", "-d4s", url], stdout=subprocess.PIPE, text=True) as process:
        if (os.cpu_count() or 1) >= 2:
            os.sched_setaffinity(process.pid, CLIENT_CPUS)  # its first microseconds anywhere: no matter
        output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output
    match = re.search(r"Requests/sec:\s+([\d.]+)", output)
    assert match is not None, output
    return float(match.group(1))


def test_benchmark_middleware_requests_per_second_on_uvicorn(start_sidecar: Any) -> None:
    wrk = shutil.which("wrk")
    if wrk is None:
        pytest.skip("wrk is not installed (apt-get install wrk)")
    sidecar: SidecarProcess = start_sidecar()
    servers: dict[str, AppServer] = {}
    try:
        for name, extra in (("plain", ["--no-middleware"]), ("middleware", [])):
            servers[name] = AppServer(
                ["sidecar.simulate.asgi_app", "--port", "0", "--latency", "0", *extra],
                {"SHUTDOWN_SIDECAR_URL": sidecar.url("")},
            )
        # asgi_app logs at warning level: its port comes from uvicorn only at info; ask the OS.
        ports = {name: listening_port(server.proc.pid) for name, server in servers.items()}
        pinned = (os.cpu_count() or 1) >= 2
        if pinned:
            for server in servers.values():
                os.sched_setaffinity(server.proc.pid, SERVER_CPUS)
            os.sched_setaffinity(sidecar.proc.pid, CLIENT_CPUS)
        rates: dict[str, list[float]] = {"plain": [], "middleware": []}
        for _ in range(ROUNDS):
            for name, port in ports.items():
                rates[name].append(requests_per_second(f"http://127.0.0.1:{port}/", wrk))
        median = {name: statistics.median(values) for name, values in rates.items()}
        cost = (1 - median["middleware"] / median["plain"]) * 100
        print(
            f"\nuvicorn hello world, wrk -t1 -c16 -d4s, {ROUNDS} alternated rounds on {os.cpu_count()} cores"
            f"{' (server and wrk pinned to one core each)' if pinned else ''}: "
            f"plain {median['plain']:,.0f} req/s, with SidecarMiddleware {median['middleware']:,.0f} req/s "
            f"({cost:+.1f}% cost; goal < 3%); rounds plain {rates['plain']}, middleware {rates['middleware']}"
        )
    finally:
        for server in servers.values():
            server.close()


def listening_port(pid: int, timeout: float = 20.0) -> int:
    """The TCP port `pid` listens on, read from /proc (uvicorn logs it only at info level)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        inodes = set()
        for fd in os.listdir(f"/proc/{pid}/fd"):
            target = os.readlink(f"/proc/{pid}/fd/{fd}") if os.path.exists(f"/proc/{pid}/fd/{fd}") else ""
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
        with open(f"/proc/{pid}/net/tcp") as table:
            for line in table.readlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                    return int(fields[1].split(":")[1], 16)
        time.sleep(0.05)  # a poll with a deadline: the server has no readiness signal here
    raise AssertionError(f"process {pid} listens on no port after {timeout}s")
