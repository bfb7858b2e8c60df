"""The sidecar's footprint beside a reference skeleton (Starlette + prometheus-client +
OpenTelemetry on uvicorn with uvloop and httptools, built here), interleaved round by round in
one run, printed with ratios to the skeleton; never asserted.

    pytest tests/benchmarks/test_footprint_benchmark.py -m benchmark -s -p no:cacheprovider

FOOTPRINT_BASE=/path/to/another/checkout adds that tree's sidecar as further rows (`python -m
sidecar` run from there), so a change is measured against its base in the same session;
FOOTPRINT_UVLOOP=1 adds `serve` on uvloop's event loop.

Each tree's sidecar package is byte-compiled first, as the image's is (pip compiles as it
installs): a checkout run with PYTHONDONTWRITEBYTECODE=1 would otherwise compile every module from
source at each start (about 30 ms here), which no pod does and the skeleton's packages never pay.
FOOTPRINT_FROM_SOURCE=1 measures that way instead."""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.benchmarks.test_serve_benchmark import paced_readyz_latencies, percentile, rss_mb
from tests.e2e.process_tree import end_session
from tests.faults.hostile import HOSTILE_OPENERS, fresh_request, hold_connections

pytestmark = [pytest.mark.benchmark, pytest.mark.timeout(1200)]

ROUNDS = int(os.environ.get("FOOTPRINT_ROUNDS", "5"))
BURST_CONNECTIONS = 2000
# Before each burst the sidecar is left this long to close the previous burst's connections: one
# burst's 2,000 closes take the next one's first 100 ms or so (a probe sent into a burst right
# after another was answered in 84 ms median, into one at a sidecar at rest in 18 ms).
# FOOTPRINT_BURST_GAP=0 sends them back to back, as before.
BURST_GAP_SECONDS = float(os.environ.get("FOOTPRINT_BURST_GAP", "1"))
PACED_RATE = 1000
PACED_SECONDS = 3.0
SKELETON = """
import sys
import uvicorn
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

registry = CollectorRegistry()
requests = Counter("skeleton_requests", "requests", registry=registry)
trace.set_tracer_provider(TracerProvider())


async def readyz(request):
    return PlainTextResponse("ok")


async def metrics(request):
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


app = Starlette(routes=[Route("/readyz", readyz), Route("/livez", readyz), Route("/metrics", metrics)])
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), loop="uvloop", http="httptools",
            lifespan="off", log_level="warning", access_log=False)
"""


@dataclass
class Target:
    name: str
    argv: Callable[[int], list[str]]
    cwd: Path | None = None
    has_prestop: bool = False
    figures: dict[str, list[float]] = field(default_factory=dict)

    def add(self, figure: str, value: float) -> None:
        self.figures.setdefault(figure, []).append(value)


# The sidecar on uvloop's event loop instead of asyncio's (serve only: run mode's SIGCHLD handler
# is refused by uvloop), for the choice the README explains.
ON_UVLOOP = "import sys, uvloop; uvloop.install(); from sidecar.cli import main; sys.exit(main())"


def sidecar_argv(mode: str, *, uvloop: bool = False) -> Callable[[int], list[str]]:
    def argv(port: int) -> list[str]:
        common = ["--host", "127.0.0.1", "--port", str(port), "--termination-log", "", "--grace-period", "60"]
        command = ["--", "sleep", "600"] if mode == "run" else []
        entry = ["-c", ON_UVLOOP] if uvloop else ["-m", "sidecar"]
        return [sys.executable, *entry, mode, *common, "--prestop-delay", "0", *command]

    return argv


def targets(skeleton: Path) -> list[Target]:
    found = [
        Target("skeleton", lambda port: [sys.executable, str(skeleton), str(port)]),
        Target("sidecar serve", sidecar_argv("serve"), has_prestop=True),
        Target("sidecar run", sidecar_argv("run")),
    ]
    if os.environ.get("FOOTPRINT_UVLOOP"):
        found.append(Target("serve on uvloop", sidecar_argv("serve", uvloop=True), has_prestop=True))
    base = os.environ.get("FOOTPRINT_BASE")
    if base:
        found += [
            Target("base serve", sidecar_argv("serve"), Path(base), has_prestop=True),
            Target("base run", sidecar_argv("run"), Path(base)),
        ]
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def skeleton(tmp_path: Path) -> Path:
    pytest.importorskip("uvloop")
    path = tmp_path / "skeleton.py"
    path.write_text(SKELETON)
    return path


def in_a_burst(port: int, method: str, path: str) -> float:
    """Milliseconds to the answer of a request sent the instant after a burst of new connections
    (it waits in the kernel's accept queue behind all of them); NaN when it was not answered 200."""
    time.sleep(BURST_GAP_SECONDS)
    with hold_connections(port, HOSTILE_OPENERS["idle"], BURST_CONNECTIONS):
        status, seconds = fresh_request(port, method, path, timeout=5)
    return seconds * 1000 if status == 200 else float("nan")


def measure(target: Target, bursts: int) -> None:
    port = free_port()
    started = time.monotonic()
    process = subprocess.Popen(
        target.argv(port), cwd=target.cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        deadline = started + 10
        while fresh_request(port, "GET", "/readyz", timeout=1)[0] != 200:
            assert time.monotonic() < deadline, f"{target.name} not ready"
            time.sleep(0.001)
        target.add("start -> /readyz 200 (ms)", (time.monotonic() - started) * 1000)
        time.sleep(1)  # idle: what is measured is the resting state
        target.add("idle RSS (MB)", rss_mb(process.pid))
        if target.name.endswith("run"):
            return  # the wrapper's probe path is serve's
        latencies = paced_readyz_latencies(port, PACED_RATE, PACED_SECONDS)
        target.add("/readyz p50 at 1000/s (ms)", percentile(latencies, 0.5) * 1000)
        target.add("/readyz p99 at 1000/s (ms)", percentile(latencies, 0.99) * 1000)
        for _ in range(bursts):
            target.add(f"probe in a {BURST_CONNECTIONS} burst (ms)", in_a_burst(port, "GET", "/readyz"))
        if target.has_prestop:
            target.add(f"/prestop in a {BURST_CONNECTIONS} burst (ms)", in_a_burst(port, "POST", "/prestop"))
    finally:
        end_session(process)


def byte_compile(tree: Path) -> None:
    command = [sys.executable, "-m", "compileall", "-q", str(tree / "sidecar")]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, timeout=120)


def test_benchmark_footprint_against_the_skeleton(skeleton: Path) -> None:
    runs = targets(skeleton)
    if not os.environ.get("FOOTPRINT_FROM_SOURCE"):
        for tree in {target.cwd or Path(__file__).parents[2] for target in runs[1:]}:
            byte_compile(tree)
    for _ in range(ROUNDS):
        for target in runs:
            measure(target, bursts=3)
    reference = runs[0]
    compiled = "from source" if os.environ.get("FOOTPRINT_FROM_SOURCE") else "byte-compiled"
    print(f"\n== footprint, {ROUNDS} rounds interleaved, sidecar {compiled} (median, [min-max]; ratio to skeleton)")
    for figure in reference.figures | runs[1].figures:
        print(f"  {figure}")
        for target in runs:
            values = target.figures.get(figure)
            if not values:
                continue
            median = statistics.median(values)
            base = statistics.median(reference.figures[figure]) if figure in reference.figures else None
            ratio = f"{median / base:.2f}x" if base else "-"
            print(f"    {target.name:<16} {median:8.2f}  [{min(values):.2f}-{max(values):.2f}]  {ratio}")
