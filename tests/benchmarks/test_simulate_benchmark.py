"""The simulate goal figure: 20 terminations at 200 requests/s with a 2 s propagation delay,
with the sidecar (native) and without it (the baseline); and how closely the load generator keeps
its schedule at the highest rate. Figures printed; the functional result (no failed request with
the sidecar) is asserted, the timings never are.

    pytest tests/benchmarks -m benchmark -s -p no:cacheprovider -k simulate"""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
import time
from typing import Any

import pytest

from sidecar.simulate.endpoints import Balancer, Propagation
from sidecar.simulate.load import LoadGenerator, Tally
from sidecar.simulate.options import MAX_RATE_PER_SECOND
from sidecar.simulate.traffic import FreshTraffic

pytestmark = [pytest.mark.benchmark, pytest.mark.timeout(600)]
ROLLOUT = ("--pods", "20", "--rps", "200", "--propagation-delay", "2", "--json")


def rehearse(*args: str) -> tuple[dict[str, Any], float]:
    started = time.monotonic()
    completed = subprocess.run(
        [sys.executable, "-m", "sidecar", "simulate", *ROLLOUT, *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.stdout, completed.stderr
    result: dict[str, Any] = json.loads(completed.stdout)
    return result, time.monotonic() - started


def summary(label: str, result: dict[str, Any], seconds: float) -> str:
    requests = result["requests"]
    kinds = ", ".join(f"{n} {kind}" for kind, n in requests["by_kind"].items() if n) or "none"
    pods = result["pods"]
    margins = [pod["report"]["margin_seconds"] for pod in pods if isinstance(pod["report"], dict)]
    drained = sum(pod["within_grace"] for pod in pods)
    reused = requests["by_connection"]["reused"]["failed"]
    load = result["load"]
    line = (
        f"{label:<10} {load['client']}/{load['balancer']} {load['connections_opened']:>5} connections; "
        f"{result['verdict']:<5} {requests['sent']:>6} sent {requests['failed']:>5} failed ({kinds}; {reused} reused); "
        f"{drained}/{len(pods)} pods inside the grace period; {seconds:.1f} s"
    )
    if margins:
        line += f"; margin min {min(margins):.2f} s"
    return line


def test_benchmark_simulate_20_terminations_at_200_rps() -> None:
    with_sidecar, sidecar_seconds = rehearse()
    baseline, baseline_seconds = rehearse("--mode", "none")
    print()
    print(summary("native", with_sidecar, sidecar_seconds))
    print(summary("none", baseline, baseline_seconds))
    assert len(with_sidecar["pods"]) == 20
    assert with_sidecar["requests"]["failed"] == 0
    assert all(pod["within_grace"] for pod in with_sidecar["pods"])
    assert baseline["requests"]["failed"] > 0


@pytest.mark.anyio
async def test_benchmark_load_generator_schedule_at_the_highest_rate() -> None:
    # No endpoint: every request is counted at once, so what is measured is the schedule alone.
    loop = asyncio.get_running_loop()
    balancer: Balancer[object] = Balancer(loop, Propagation(0.0), random.Random(1))
    tally, stop = Tally(), asyncio.Event()
    seconds = 2.0
    loop.call_later(seconds, stop.set)
    started = loop.time()
    await LoadGenerator(FreshTraffic(balancer), MAX_RATE_PER_SECOND, 1.0, tally).run(stop)  # type: ignore[arg-type]
    took = loop.time() - started
    expected = int(seconds * MAX_RATE_PER_SECOND)
    print(f"\nload at {MAX_RATE_PER_SECOND:g}/s: {tally.total_sent} sent in {took:.3f} s (schedule: {expected})")
    assert tally.total_sent > 0
