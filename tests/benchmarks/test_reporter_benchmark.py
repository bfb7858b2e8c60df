"""What the integrations' reports cost: the sidecar's CPU (% of a core) and RSS while 1 and 8 busy
workers report on POST /drain (each about ten reports a second), and the reporting thread's own
CPU in the app. Printed, never asserted.

    pytest tests/benchmarks/test_reporter_benchmark.py -m benchmark -s -p no:cacheprovider

BENCH_BASE_PATH=/path/to/another/tree runs that tree's reporter too, alternated round by round with
this one (the same sidecar code serves both: only the workers' PYTHONPATH differs)."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.benchmarks.test_serve_benchmark import rss_mb
from tests.e2e.sidecar_process import SidecarProcess

pytestmark = [pytest.mark.benchmark, pytest.mark.timeout(900)]
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "10"))
RATE = 500.0  # requests a second per worker: busy enough that every report interval has news
WORKER_COUNTS = (1, 8)
WARM_UP_SECONDS = 1.0
WORKER = str(Path(__file__).with_name("reporter_worker.py"))
THIS_TREE = str(Path(__file__).resolve().parents[2])


def process_cpu_seconds(pid: int) -> float:
    """All of the process's threads' time on a CPU, in nanoseconds' precision."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as schedstat:
                total += int(schedstat.read().split()[0])
        except FileNotFoundError:
            pass  # a thread that ended meanwhile
    return total / 1e9


def one_run(tree: str, workers: int) -> dict[str, float]:
    """A fresh sidecar, `workers` reporting to it for SECONDS; its CPU share measured after a warm-up."""
    sidecar = SidecarProcess.serve()
    try:
        env = {**os.environ, "PYTHONPATH": tree}
        processes = [
            subprocess.Popen(
                [sys.executable, WORKER, sidecar.url(""), str(SECONDS + WARM_UP_SECONDS), str(RATE)],
                stdout=subprocess.PIPE,
                text=True,
                env=env,
            )
            for _ in range(workers)
        ]
        time.sleep(WARM_UP_SECONDS)  # a measuring window, not a synchronisation
        cpu_before, started = process_cpu_seconds(sidecar.proc.pid), time.monotonic()
        time.sleep(SECONDS * 0.9)
        share = (process_cpu_seconds(sidecar.proc.pid) - cpu_before) / (time.monotonic() - started)
        rss = rss_mb(sidecar.proc.pid)
        results = []
        for process in processes:
            output, _ = process.communicate(timeout=30)
            assert process.returncode == 0, output
            results.append(json.loads(output))
    finally:
        sidecar.close()
    reports = sum(result["reports"] for result in results)
    reporter_cpu = sum(result["reporter_cpu_seconds"] for result in results)
    seconds = statistics.mean(result["seconds"] for result in results)
    return {
        "sidecar_cpu_percent": share * 100,
        "sidecar_rss_mb": rss,
        "reports_per_second_per_worker": reports / workers / seconds,
        "reporter_cpu_percent_per_worker": reporter_cpu / workers / seconds * 100,
        "reporter_us_per_report": reporter_cpu / reports * 1e6,
        "failures": sum(result["failures"] for result in results),
    }


def test_benchmark_reporter_cost_to_the_sidecar_and_the_app() -> None:
    trees = {"this tree": THIS_TREE}
    base = os.environ.get("BENCH_BASE_PATH")
    if base:
        trees["base"] = base
    runs: dict[tuple[str, int], list[dict[str, float]]] = {}
    for _ in range(ROUNDS):
        for workers in WORKER_COUNTS:
            for name, tree in trees.items():
                runs.setdefault((name, workers), []).append(one_run(tree, workers))
    print(
        f"\nreporter cost, {ROUNDS} alternated rounds of {SECONDS:g} s, {RATE:g} requests/s a worker, "
        f"{os.cpu_count()} cores"
    )
    for (name, workers), results in runs.items():
        keys = results[0].keys()
        median = {key: statistics.median(result[key] for result in results) for key in keys}
        rounds = ", ".join(f"{result['sidecar_cpu_percent']:.2f}" for result in results)
        print(
            f"{name:>9}, {workers} worker(s): sidecar {median['sidecar_cpu_percent']:.2f} % of a core "
            f"(rounds {rounds}), RSS {median['sidecar_rss_mb']:.1f} MB; "
            f"{median['reports_per_second_per_worker']:.1f} reports/s a worker; reporter thread "
            f"{median['reporter_cpu_percent_per_worker']:.3f} % of a core a worker, "
            f"{median['reporter_us_per_report']:.0f} us a report; failures {median['failures']:g}"
        )
