"""Figures for `serve`, printed, never asserted (a loaded CI machine must not fail the build).

    pytest tests/benchmarks -m benchmark -s -p no:cacheprovider

Needs `wrk` (Debian package) for the throughput figure; everything runs on loopback, bounded in
count and time."""

from __future__ import annotations

import os
import re
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.e2e.process_tree import end_session
from tests.e2e.sidecar_process import SidecarProcess, wait_until

pytestmark = [pytest.mark.benchmark, pytest.mark.timeout(600)]

LIFECYCLE_ARGS = ["serve", "--host", "127.0.0.1", "--port", "0", "--termination-log", "",
                  "--grace-period", "1.2", "--prestop-delay", "0.2", "--report-reserve", "0.5"]  # fmt: skip
REQUEST = b"GET /readyz HTTP/1.1\r\nHost: bench\r\n\r\n"


class RawProbe:
    """One keep-alive connection sending minimal requests: the cheapest client Python has."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def status(self) -> int:
        self.sock.sendall(REQUEST)
        data = b""
        while b"\r\n\r\n" not in data:
            data += self.sock.recv(4096)
        head, _, body = data.partition(b"\r\n\r\n")
        length = int(re.search(rb"content-length: (\d+)", head, re.IGNORECASE).group(1))  # type: ignore[union-attr]
        while len(body) < length:
            body += self.sock.recv(4096)
        return int(head.split(b" ", 2)[1])

    def close(self) -> None:
        self.sock.close()


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_for_exit(pid: int, timeout: float, clock: Callable[[], float] = time.time) -> float:
    """`clock()` when `pid` exits, from a pidfd: Popen.wait(timeout) polls with sleeps up to 50 ms."""
    pidfd = os.pidfd_open(pid)
    try:
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        assert poller.poll(timeout * 1000), "the process did not exit"
        return clock()
    finally:
        os.close(pidfd)


def report(title: str, rows: list[tuple[str, str, str]]) -> None:
    print(f"\n== {title}")
    for name, figure, target in rows:
        print(f"  {name:<48} {figure:>14}   target {target}")


@pytest.fixture
def sidecar() -> Iterator[SidecarProcess]:
    process = SidecarProcess.serve("--grace-period", "60", "--prestop-delay", "40")
    yield process
    process.close()


def test_benchmark_lifecycle_timings() -> None:
    start_ready, term_to_503, done_to_exit, prestop_late = [], [], [], []
    for _ in range(15):
        started = time.monotonic()
        process = SidecarProcess(LIFECYCLE_ARGS)
        try:
            ready = process.wait_for_log(lambda line: line.get("msg") == "sidecar ready", 10)
            process.port = int(ready["port"])
            probe = RawProbe(process.port)
            wait_until(lambda: probe.status() == 200, 5, interval=0.001)  # noqa: B023
            start_ready.append(time.monotonic() - started)
            sent = process.send_signal(signal.SIGTERM)
            while probe.status() == 200:
                pass
            term_to_503.append(time.monotonic() - sent)
            probe.close()
            released = httpx.get(process.url("/prestop"), timeout=5).json()
            exited = wait_for_exit(process.proc.pid, 10)
            assert process.wait(1) == 0
            done = process.wait_for_log(lambda line: line.get("to") == "done", 0)
            done_to_exit.append(exited - done["ts"])
            prestop_late.append(released["released"] - (released["t0"] + 0.2))
        finally:
            process.close()
    ms = 1000
    report(
        "lifecycle (15 runs; median / max)",
        [
            ("start -> /readyz 200", f"{statistics.median(start_ready) * ms:.0f} / {max(start_ready) * ms:.0f} ms",
             "<= 250 ms"),
            ("SIGTERM sent -> first 503 seen", f"{statistics.median(term_to_503) * ms:.2f} / "
             f"{max(term_to_503) * ms:.2f} ms", "<= 1 ms"),
            ("/prestop released after t0 + delay", f"{statistics.median(prestop_late) * ms:.2f} / "
             f"{max(prestop_late) * ms:.2f} ms", "<= 2 ms"),
            ("phase done -> process exit", f"{statistics.median(done_to_exit) * ms:.1f} / "
             f"{max(done_to_exit) * ms:.1f} ms", "<= 20 ms"),
        ],
    )  # fmt: skip


def test_benchmark_idle_memory_and_cpu(sidecar: SidecarProcess) -> None:
    pid = sidecar.proc.pid
    time.sleep(1)  # settle: what is measured is the idle state itself
    cpu_before = cpu_seconds(pid)
    time.sleep(5)
    idle_cpu = (cpu_seconds(pid) - cpu_before) / 5
    report(
        "idle",
        [
            ("RSS after start", f"{rss_mb(pid):.1f} MB", "<= 30 MB"),
            ("CPU over 5 s idle", f"{idle_cpu * 100:.2f} %", "~ 0"),
        ],
    )


def paced_readyz_latencies(port: int, rate: float, seconds: float) -> list[float]:
    probe = RawProbe(port)
    latencies: list[float] = []
    interval = 1 / rate
    next_at = time.monotonic()
    end = next_at + seconds
    while next_at < end:
        delay = next_at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        started = time.monotonic()
        probe.status()
        latencies.append(time.monotonic() - started)
        next_at += interval
    probe.close()
    return latencies


def test_benchmark_readyz_latency_idle_and_under_prestop_waiters_and_scrapes(sidecar: SidecarProcess) -> None:
    idle = paced_readyz_latencies(sidecar.port, 1000, 5)

    stop = threading.Event()

    def scrape() -> None:
        with httpx.Client(timeout=5) as client:
            while not stop.wait(0.1):
                client.get(sidecar.url("/metrics"))

    waiters = [
        subprocess.Popen(["curl", "-s", "-o", "/dev/null", sidecar.url("/prestop")], start_new_session=True)
        for _ in range(64)
    ]  # 64 real clients held by /prestop for the whole measurement
    scraper = threading.Thread(target=scrape)
    scraper.start()
    try:
        wait_until(lambda: sidecar.get("/status").json()["phase"] == "prestop_delay", 5)
        loaded = paced_readyz_latencies(sidecar.port, 1000, 5)
    finally:
        stop.set()
        scraper.join()
        for waiter in waiters:
            end_session(waiter)
    ms = 1000
    report(
        "/readyz latency at 1000 req/s, 5 s each (p50 / p99 / max)",
        [
            ("idle", f"{percentile(idle, .5) * ms:.2f} / {percentile(idle, .99) * ms:.2f} / {max(idle) * ms:.2f} ms",
             "p99 <= 1 ms"),
            ("64 /prestop waiting + /metrics every 100 ms", f"{percentile(loaded, .5) * ms:.2f} / "
             f"{percentile(loaded, .99) * ms:.2f} / {max(loaded) * ms:.2f} ms", "p99 <= 5 ms"),
        ],
    )  # fmt: skip


def test_benchmark_readyz_throughput_with_32_keepalive_clients(sidecar: SidecarProcess) -> None:
    wrk = shutil.which("wrk")
    if wrk is None:
        pytest.skip("wrk is not installed (apt-get install wrk)")
    result = subprocess.run(
        [wrk, "-t2", "-c32", "-d5s", "--latency", sidecar.url("/readyz")],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", result.stdout).group(1))  # type: ignore[union-attr]
    p99 = re.search(r"99%\s+(\S+)", result.stdout).group(1)  # type: ignore[union-attr]
    report(
        f"/readyz throughput (wrk -t2 -c32 -d5s on the same {os.cpu_count()} cores)",
        [("requests/s", f"{rate:,.0f}", ">= 20,000"), ("p99 latency", p99, "-")],
    )
    print(f"  python {sys.version.split()[0]}")
