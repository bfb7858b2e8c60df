"""The final telemetry reaching real receivers: a Prometheus scraping through a shutdown, a
Pushgateway receiving the final push, and receivers that fail."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.e2e.sidecar_process import SidecarProcess, wait_until
from tests.e2e.telemetry_servers import binary, prometheus, pushgateway, query
from tests.e2e.test_run import free_port

StartSidecar = Callable[..., SidecarProcess]
POD = {"POD_NAME": "web-7d9f8b6c4-x2kfz", "POD_NAMESPACE": "shop"}


def clean_shutdown(sidecar: SidecarProcess) -> None:
    """t0 by /prestop, then the app reports its drain complete."""
    assert sidecar.get("/prestop").status_code == 200
    assert sidecar.post("/drain", json={"event": "complete"}).json()["drain_end_accepted"] is True


def test_telemetry_pushgateway_receives_the_final_metrics_grouped_by_workload(start_sidecar: StartSidecar) -> None:
    with pushgateway() as url:
        sidecar = start_sidecar("--grace-period", "10", "--prestop-delay", "0.2", "--pushgateway-url", url, env=POD)
        clean_shutdown(sidecar)
        assert sidecar.wait(timeout=8) == 0
        assert sidecar.report()["errors"] == []
        pushed = httpx.get(f"{url}/metrics", timeout=5).text
    series = (
        'sidecar_shutdowns_total{instance="",job="shutdown-sidecar",namespace="shop",outcome="clean",workload="web"}'
    )
    assert f"{series} 1" in pushed


@pytest.mark.parametrize("receiver", ["refused", "silent"])
def test_telemetry_pushgateway_failure_is_named_and_the_process_still_exits_before_the_deadline(
    start_sidecar: StartSidecar, silent_port: int, receiver: str
) -> None:
    port = free_port() if receiver == "refused" else silent_port
    sidecar = start_sidecar(
        "--grace-period", "3", "--prestop-delay", "0.2", "--report-reserve", "1",
        "--pushgateway-url", f"http://127.0.0.1:{port}",
    )  # fmt: skip
    sent = sidecar.send_signal(signal.SIGTERM)
    probes: list[float] = []
    while sidecar.proc.poll() is None:  # probes keep answering while the push hangs
        started = time.monotonic()
        try:
            sidecar.get("/livez")
        except httpx.TransportError:
            break
        probes.append(time.monotonic() - started)
    assert sidecar.wait(timeout=5) == 0
    assert time.monotonic() - sent < 3
    errors = sidecar.report()["errors"]
    assert len(errors) == 1
    assert errors[0].startswith("pushgateway: ")
    assert max(probes) < 0.5


def test_telemetry_prometheus_sees_the_first_shutdown_thanks_to_linger(
    start_sidecar: StartSidecar, tmp_path: Path
) -> None:
    port = free_port()
    with prometheus(tmp_path, port) as url:
        sidecar = SidecarProcess(
            ["serve", "--host", "127.0.0.1", "--port", str(port), "--termination-log", "",
             "--grace-period", "20", "--prestop-delay", "2", "--linger", "5"]
        )  # fmt: skip
        try:
            sidecar.wait_for_log(lambda line: line.get("msg") == "sidecar ready", 10)
            sidecar.port = port
            wait_until(lambda: query(url, 'up{job="sidecar"} == 1'), 15, interval=0.2, what="a first scrape")
            clean_shutdown(sidecar)
            assert sidecar.wait(timeout=10) == 0
            linger = sidecar.wait_for_log(lambda line: line.get("msg") == "linger ended", 0)
            assert linger["scraped"] is True
            report = sidecar.report()
        finally:
            sidecar.close()

        clean = query(url, 'increase(sidecar_shutdowns_total{outcome="clean"}[2m])')
        assert clean
        assert float(clean[0]["value"][1]) > 0
        assert query(url, 'max_over_time(sidecar_shutdown_phase{phase="prestop_delay"}[2m]) == 1')
        assert query(url, 'max_over_time(sidecar_shutdown_phase{phase="done"}[2m]) == 1')
        seen = query(url, 'last_over_time(sidecar_shutdown_phase_duration_seconds_sum{phase="prestop_delay"}[2m])')
        assert float(seen[0]["value"][1]) == pytest.approx(
            report["phases"]["prestop_delay"]["duration_seconds"], abs=1e-3
        )


def test_telemetry_metrics_pass_promtool_check_metrics(start_sidecar: StartSidecar) -> None:
    promtool = binary("promtool")
    sidecar = start_sidecar()
    for accept in ("text/plain", "application/openmetrics-text; version=1.0.0"):
        exposition = sidecar.get("/metrics", headers={"Accept": accept}).text
        if accept.startswith("application/openmetrics"):
            assert exposition.rstrip().endswith("# EOF")
            continue  # promtool lints the Prometheus text format
        result = subprocess.run(
            [promtool, "check", "metrics"], input=exposition, capture_output=True, text=True, timeout=30, check=False
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.strip() == "", result.stdout
