"""The dashboard against the real thing: a demo app and a sidecar going through a shutdown with
late traffic, scraped every second by a real Prometheus with the labels the chart's PodMonitor
adds; then every dashboard query must return data over that window, and every metric it names
must be one a running sidecar exports."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.charts.test_dashboard import QUERIES, selectors, substitute
from tests.e2e.process_tree import end_session
from tests.e2e.sidecar_process import SidecarProcess, wait_until
from tests.e2e.telemetry_servers import prometheus, query, query_range
from tests.e2e.test_run import free_port

LABELS = {"namespace": "shop", "pod": "web-7d9f8b6c4-x2kfz", "workload": "web"}


@dataclass(frozen=True)
class Rehearsal:
    prometheus_url: str
    start: float
    end: float
    exported: frozenset[str]  # metric names in the running sidecar's /metrics


def exported_names(exposition: str) -> frozenset[str]:
    return frozenset(line.split("{")[0].split(" ")[0] for line in exposition.splitlines() if not line.startswith("#"))


def late_traffic(port: int, stop: threading.Event) -> None:
    while not stop.is_set():
        with contextlib.suppress(httpx.TransportError):  # the app stops accepting at its SIGTERM
            httpx.get(f"http://127.0.0.1:{port}/", timeout=2, headers={"Connection": "close"})
        stop.wait(0.02)


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rehearsal]:
    tmp_path: Path = tmp_path_factory.mktemp("prometheus")
    app_port, admin_port = free_port(), free_port()
    app = subprocess.Popen(
        [sys.executable, "-m", "sidecar.demo", "--port", str(app_port)],
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    sidecar = SidecarProcess(
        ["serve", "--host", "127.0.0.1", "--port", str(admin_port), "--termination-log", "",
         "--app-port", str(app_port), "--grace-period", "20", "--prestop-delay", "2", "--linger", "5"]
    )  # fmt: skip
    sidecar.port = admin_port
    stop = threading.Event()
    traffic = threading.Thread(target=late_traffic, args=(app_port, stop))
    try:
        with prometheus(tmp_path, admin_port, LABELS) as url:
            start = time.time()
            sidecar.wait_for_log(lambda line: line.get("msg") == "sidecar ready", 10)
            exported = exported_names(sidecar.get("/metrics").text)
            wait_until(lambda: query(url, 'up{job="sidecar"} == 1'), 15, interval=0.2, what="a first scrape")
            traffic.start()
            sidecar.send_signal(signal.SIGTERM)
            wait_until(lambda: sidecar.get("/status").json()["time_left_seconds"] <= 19, 5, what="1 s after t0")
            stop.set()
            traffic.join(timeout=5)
            sidecar.wait_for_log(lambda line: line.get("to") == "drain", 5)
            app.send_signal(signal.SIGTERM)
            assert sidecar.wait(timeout=15) == 0
            assert sidecar.report()["late_connections"] > 0
            yield Rehearsal(url, start, time.time(), exported)
    finally:
        stop.set()
        if traffic.is_alive():
            traffic.join(timeout=5)
        sidecar.close()
        end_session(app)
        if app.stderr is not None:
            app.stderr.close()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("expr", QUERIES)
def test_dashboard_query_returns_data_from_a_real_prometheus_after_a_shutdown(rehearsal: Rehearsal, expr: str) -> None:
    promql = substitute(expr).replace('=~"shop|web"', '=~"shop"')
    result = query_range(rehearsal.prometheus_url, promql, rehearsal.start, rehearsal.end)
    assert result, f"no data for {promql}"


@pytest.mark.timeout(120)
@pytest.mark.parametrize("expr", QUERIES)
def test_dashboard_query_names_only_metrics_a_running_sidecar_exports(rehearsal: Rehearsal, expr: str) -> None:
    for selector in selectors(expr):
        assert selector.name in rehearsal.exported
