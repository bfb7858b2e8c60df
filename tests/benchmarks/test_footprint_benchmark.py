"""The sidecar's footprint beside a reference skeleton (Starlette + prometheus-client +
OpenTelemetry on uvicorn with uvloop and httptools, built here), interleaved round by round in
one run, printed with ratios to the skeleton; never asserted.

    pytest tests/benchmarks/test_footprint_benchmark.py -m benchmark -s -p no:cacheprovider

FOOTPRINT_BASE=/path/to/another/checkout adds that tree's sidecar as further rows, so a change is
measured against its base in the same session; FOOTPRINT_UVLOOP=1 adds `serve` on uvloop's event
loop.

Both sides run as shipped, alike: each in a virtual environment of its own, made here, whose
dependencies are this environment's installed packages (a path line in a .pth file: importable,
their own .pth files not run), and each tree's sidecar built into a wheel and installed there, as
the image does (pip byte-compiles as it installs), started by its `shutdown-sidecar` script as the
image's entrypoint is. A development environment runs, at every interpreter start, the .pth files
of its editable install (its finder imports pathlib, urllib.parse, ipaddress: about 10 ms in
`-X importtime`), of coverage and of setuptools, which no image runs. Measured both ways (11 starts
each, interleaved), they cost both sides about the same and little (skeleton 156 / 156 ms, base
sidecar 104 / 104 ms): the sidecar and the skeleton import those modules anyway. FOOTPRINT_IN_DEV_VENV=1
measures the earlier way: this environment's Python for all, each tree's `python -m sidecar` from
the checkout, byte-compiled.
Every start waits FOOTPRINT_START_GAP seconds (1) after the previous target ended, so that none
starts while the kernel tears down the previous target's burst connections."""

from __future__ import annotations

import os
import shutil
import socket
import statistics
import subprocess
import sys
import sysconfig
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
# Each start waits as long after the previous target ended: a target that follows one with bursts
# (each sidecar's `run` follows its `serve`; the skeleton follows `base run`, which has none) would
# otherwise start while the kernel tears down that target's thousands of connections.
START_GAP_SECONDS = float(os.environ.get("FOOTPRINT_START_GAP", "1"))
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


IN_DEV_VENV = bool(os.environ.get("FOOTPRINT_IN_DEV_VENV"))
# What the image's build stage copies to build the wheel (Dockerfile).
BUILD_SOURCES = ("pyproject.toml", "README.md", "LICENSE", "sidecar")
HERE = Path(__file__).parents[2]


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


def sidecar_argv(mode: str, python: str, *, uvloop: bool = False) -> Callable[[int], list[str]]:
    """The sidecar in `mode`, started by the `shutdown-sidecar` script next to `python` (as the
    image's entrypoint), or by `python -m sidecar` in a development environment."""

    def argv(port: int) -> list[str]:
        common = ["--host", "127.0.0.1", "--port", str(port), "--termination-log", "", "--grace-period", "60"]
        command = ["--", "sleep", "600"] if mode == "run" else []
        if uvloop:
            entry = [python, "-c", ON_UVLOOP]
        elif IN_DEV_VENV:
            entry = [python, "-m", "sidecar"]
        else:
            entry = [str(Path(python).parent / "shutdown-sidecar")]
        return [*entry, mode, *common, "--prestop-delay", "0", *command]

    return argv


def shipped_environment(where: Path, tree: Path | None = None) -> str:
    """A virtual environment at `where` with this environment's packages importable, and `tree`'s
    sidecar built into a wheel and installed, as the image's build stage does; its Python."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True, timeout=120)
    python = str(where / "bin" / "python")
    site_packages = Path(sysconfig.get_path("purelib", "venv", {"base": str(where), "platbase": str(where)}))
    # A path line: this environment's packages, without running its .pth files.
    (site_packages / "dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    if tree is not None:
        source = where.with_name(f"{where.name}-src")
        for name in BUILD_SOURCES:
            if (tree / name).is_dir():
                shutil.copytree(tree / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                source.mkdir(parents=True, exist_ok=True)
                shutil.copy(tree / name, source / name)
        pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]
        wheels = where.with_name(f"{where.name}-wheels")
        build = [*pip, "wheel", "--no-cache-dir", "--no-deps", "--wheel-dir", str(wheels), str(source)]
        subprocess.run(build, check=True, timeout=300)
        install = [*pip, "--python", python, "install", "--no-cache-dir", "--no-deps", *map(str, wheels.glob("*.whl"))]
        subprocess.run(install, check=True, timeout=300)
    return python


def targets(skeleton: Path, workspace: Path) -> list[Target]:
    base = os.environ.get("FOOTPRINT_BASE")
    trees = {"sidecar": HERE, **({"base": Path(base)} if base else {})}
    if IN_DEV_VENV:
        for tree in trees.values():
            byte_compile(tree)
        skeleton_python = sys.executable
        python = dict.fromkeys(trees, sys.executable)
        cwd: dict[str, Path | None] = dict(trees)
    else:
        skeleton_python = shipped_environment(workspace / "skeleton")
        python = {name: shipped_environment(workspace / name, tree) for name, tree in trees.items()}
        cwd = dict.fromkeys(trees)
    found = [Target("skeleton", lambda port: [skeleton_python, str(skeleton), str(port)])]
    for name in trees:
        found += [
            Target(f"{name} serve", sidecar_argv("serve", python[name]), cwd[name], has_prestop=True),
            Target(f"{name} run", sidecar_argv("run", python[name]), cwd[name]),
        ]
        if name == "sidecar" and os.environ.get("FOOTPRINT_UVLOOP"):
            found.append(Target("serve on uvloop", sidecar_argv("serve", python[name], uvloop=True), cwd[name], True))
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
    time.sleep(START_GAP_SECONDS)
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


def test_benchmark_footprint_against_the_skeleton(skeleton: Path, tmp_path: Path) -> None:
    runs = targets(skeleton, tmp_path)
    for _ in range(ROUNDS):
        for target in runs:
            measure(target, bursts=3)
    reference = runs[0]
    how = "in this environment, from the checkouts" if IN_DEV_VENV else "each as shipped, in a venv of its own"
    print(f"\n== footprint, {ROUNDS} rounds interleaved, {how} (median, [min-max]; ratio to skeleton)")
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
