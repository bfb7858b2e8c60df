"""Probe latency and memory of `serve` under hostile loads on the admin port, printed, never
asserted (a loaded CI machine must not fail the build). What each load must not break is asserted
in tests/faults; this prints the figures for the README and the issue.

    pytest tests/benchmarks/test_faults_benchmark.py -m benchmark -s -p no:cacheprovider

Loopback only, bounded in connections (2,000 held, 256 flooding clients) and in time (a few seconds per load)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest

from sidecar.admin.protocol import raise_fd_limit
from tests.benchmarks.test_serve_benchmark import percentile
from tests.e2e.sidecar_process import SidecarProcess
from tests.faults.hostile import (
    HOSTILE_OPENERS,
    RequestFlood,
    fresh_request,
    hold_connections,
    peak_rss_mb,
    send_huge_header,
)

pytestmark = [pytest.mark.benchmark, pytest.mark.timeout(600)]

HELD_CONNECTIONS = 2000
PROBES_PER_PATH = 40
BURSTS = 7
FLOODING_CLIENTS = 256
FLOOD_SECONDS = 3.0


@pytest.fixture
def sidecar() -> Iterator[SidecarProcess]:
    raise_fd_limit()
    process = SidecarProcess.serve("--grace-period", "60", "--prestop-delay", "0")
    yield process
    process.close()


def probe_figures(port: int) -> tuple[str, str]:
    """p50 / p99 / max of fresh-connection /livez and /readyz, and the status codes seen."""
    latencies: list[float] = []
    codes: dict[int, int] = {}
    for _ in range(PROBES_PER_PATH):
        for path in ("/livez", "/readyz"):
            status, seconds = fresh_request(port, "GET", path)
            latencies.append(seconds)
            codes[status] = codes.get(status, 0) + 1
    ms = 1000
    figure = (
        f"{percentile(latencies, 0.5) * ms:.1f} / {percentile(latencies, 0.99) * ms:.1f} / {max(latencies) * ms:.1f}"
    )
    return figure, " ".join(f"{code}x{count}" for code, count in sorted(codes.items()))


def burst_probe(port: int) -> tuple[int, float]:
    """The probe sent the instant after the hostile connections were opened: it waits in the
    kernel's accept queue behind all of them (FIFO), whatever the server does once it accepts."""
    return fresh_request(port, "GET", "/readyz")


def burst_figure(port: int, opener: tuple[bytes, bytes | None], first: tuple[int, float]) -> str:
    """p50 / max of BURSTS burst probes (`first` and BURSTS - 1 more bursts), and the statuses."""
    results = [first]
    for _ in range(BURSTS - 1):
        with hold_connections(port, opener, HELD_CONNECTIONS):
            results.append(burst_probe(port))
    latencies = [seconds for _, seconds in results]
    codes: dict[int, int] = {}
    for status, _ in results:
        codes[status] = codes.get(status, 0) + 1
    ms = 1000
    statuses = " ".join(f"{code}x{count}" for code, count in sorted(codes.items()))
    return f"{percentile(latencies, 0.5) * ms:.0f} / {max(latencies) * ms:.0f} ms ({statuses})"


def print_row(name: str, figure: str, codes: str) -> None:
    print(f"  {name:<40} {figure:>22} ms   {codes}")


def test_benchmark_probe_latency_under_held_connections(sidecar: SidecarProcess) -> None:
    print(f"\n== fresh-connection /livez + /readyz, {PROBES_PER_PATH} each (p50 / p99 / max; status x count)")
    print_row("idle server", *probe_figures(sidecar.port))
    for name, opener in HOSTILE_OPENERS.items():
        with hold_connections(sidecar.port, opener, HELD_CONNECTIONS) as held:
            first = burst_probe(sidecar.port)  # then the server has taken in the burst
            figure, codes = probe_figures(sidecar.port)
        burst = burst_figure(sidecar.port, opener, first)
        print_row(f"{held} held: {name}", figure, f"{codes}; the probe in the burst, p50 / max of {BURSTS}: {burst}")
    with hold_connections(sidecar.port, HOSTILE_OPENERS["slow headers"], HELD_CONNECTIONS):
        status, seconds = fresh_request(sidecar.port, "POST", "/prestop")
        print_row(f"{HELD_CONNECTIONS} held: /prestop", f"{seconds * 1000:.1f}", f"{status}x1")


@pytest.mark.parametrize("path", ["/metrics", "/status", "/no-such-path"])
def test_benchmark_probe_latency_under_a_flood_of_requests(sidecar: SidecarProcess, path: str) -> None:
    with RequestFlood(sidecar.port, FLOODING_CLIENTS, path) as flood:
        figure, codes = probe_figures(sidecar.port)
        # Long enough for a request rate worth printing: the probes may take a fraction of a second.
        time.sleep(max(0.0, FLOOD_SECONDS - (time.monotonic() - flood.started)))
        figure_late, codes_late = probe_figures(sidecar.port)
    rate = flood.requests / flood.seconds
    requests = f"{flood.requests} requests in {flood.seconds:.1f} s ({rate:.0f}/s)"
    print(f"\n== {path} flood: {FLOODING_CLIENTS} keep-alive clients, back to back, {requests}")
    print_row("/livez + /readyz, at once", figure, codes)
    print_row(f"/livez + /readyz, after {FLOOD_SECONDS} s", figure_late, codes_late)


def attack(port: int, count: int, megabytes: int) -> list[str]:
    results: list[str] = []
    threads = [
        threading.Thread(target=lambda: results.append(send_huge_header(port, megabytes * 1024 * 1024)))
        for _ in range(count)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


def measure_peak(pid: int, run: Callable[[], list[str]]) -> tuple[float, float, list[str]]:
    before = peak_rss_mb(pid)
    results = run()
    return before, peak_rss_mb(pid), results


@pytest.mark.parametrize(("count", "megabytes"), [(1, 50), (5, 60)])
def test_benchmark_peak_rss_under_header_attacks(count: int, megabytes: int) -> None:
    process = SidecarProcess.serve("--grace-period", "60")
    try:
        before, after, results = measure_peak(process.proc.pid, lambda: attack(process.port, count, megabytes))
        status, _ = fresh_request(process.port, "GET", "/livez")
    finally:
        process.close()
    print(f"\n== {count} x {megabytes} MB header: peak RSS {before:.1f} -> {after:.1f} MB; answers {sorted(results)}")
    print(f"  /livez afterwards: {status}")
