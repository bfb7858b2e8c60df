"""Real Prometheus and Pushgateway (Debian packages) on loopback, for the telemetry tests. Under
CI=true a missing binary fails the test: CI installs them, and a skip would hide that it did not."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.process_tree import end_session
from tests.e2e.sidecar_process import wait_until
from tests.e2e.test_run import free_port


def binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (Debian package); .ci/run installs it"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


@contextmanager
def running(argv: list[str], ready_url: str) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)

    def is_ready() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"{argv[0]} exited: {process.stderr.read().decode() if process.stderr else ''}")
        try:
            return httpx.get(ready_url, timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_until(is_ready, 20, interval=0.05, what=f"{argv[0]} to be ready")
        yield process
    finally:
        process.terminate()  # a clean stop first; then whatever is left of its session
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=10)
        end_session(process)
        if process.stderr is not None:
            process.stderr.close()


@contextmanager
def pushgateway() -> Iterator[str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with running([binary("prometheus-pushgateway"), f"--web.listen-address=127.0.0.1:{port}"], f"{url}/-/ready"):
        yield url


@contextmanager
def prometheus(tmp_path: Path, target_port: int, labels: dict[str, str] | None = None) -> Iterator[str]:
    """Prometheus scraping 127.0.0.1:`target_port` every second, adding `labels` to its series
    (as a PodMonitor's relabelling would add namespace, pod and workload)."""
    port = free_port()
    config = tmp_path / "prometheus.yml"
    target = {"targets": [f"127.0.0.1:{target_port}"], "labels": labels or {}}
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        f"  - job_name: sidecar\n    static_configs: [{json.dumps(target)}]\n"
    )
    url = f"http://127.0.0.1:{port}"
    argv = [
        binary("prometheus"),
        f"--config.file={config}",
        f"--storage.tsdb.path={tmp_path / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    with running(argv, f"{url}/-/ready"):
        yield url


def query_range(prometheus_url: str, promql: str, start: float, end: float) -> list[dict[str, Any]]:
    params = {"query": promql, "start": start, "end": end, "step": 1}
    body = httpx.get(f"{prometheus_url}/api/v1/query_range", params=params, timeout=10).json()
    assert body["status"] == "success", body
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def query(prometheus_url: str, promql: str) -> list[dict[str, Any]]:
    body = httpx.get(f"{prometheus_url}/api/v1/query", params={"query": promql}, timeout=5).json()
    assert body["status"] == "success", body
    result: list[dict[str, Any]] = body["data"]["result"]
    return result
