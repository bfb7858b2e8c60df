"""The shutdown trace exported over OTLP/HTTP to a real receiver, and what a failing one does."""

from __future__ import annotations

import concurrent.futures
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.benchmarks.test_serve_benchmark import wait_for_exit
from tests.e2e.otlp_receiver import otlp_receiver
from tests.e2e.sidecar_process import SidecarProcess
from tests.e2e.test_run import free_port

StartSidecar = Callable[..., SidecarProcess]
POD = {"POD_NAME": "web-7d9f8b6c4-x2kfz", "POD_NAMESPACE": "shop", "NODE_NAME": "node-1"}


def attributes(items: Any) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for item in items:
        kind = item.value.WhichOneof("value")
        values[item.key] = getattr(item.value, kind)
    return values


def test_tracing_shutdown_trace_has_the_root_span_children_attributes_and_identity(
    start_sidecar: StartSidecar,
) -> None:
    with otlp_receiver() as receiver:
        env = {**POD, "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_RESOURCE_ATTRIBUTES": "team=payments"}
        sidecar = start_sidecar("--grace-period", "10", "--prestop-delay", "0.3", env=env)
        assert sidecar.get("/prestop").status_code == 200
        assert sidecar.post("/drain", json={"event": "complete"}).status_code == 200
        assert sidecar.wait(timeout=8) == 0
        assert sidecar.report()["errors"] == []
        assert receiver.received.is_set()
    resource_spans = receiver.requests[0].resource_spans[0]
    resource = attributes(resource_spans.resource.attributes)
    assert resource["k8s.pod.name"] == "web-7d9f8b6c4-x2kfz"
    assert resource["k8s.namespace.name"] == "shop"
    assert resource["k8s.node.name"] == "node-1"
    assert resource["team"] == "payments"
    assert resource["service.name"] == "shutdown-sidecar"
    spans = {span.name: span for scope in resource_spans.scope_spans for span in scope.spans}
    assert set(spans) == {"shutdown", "shutdown.prestop_delay", "shutdown.drain"}
    root = spans["shutdown"]
    for child in ("shutdown.prestop_delay", "shutdown.drain"):
        assert spans[child].parent_span_id == root.span_id
        assert spans[child].trace_id == root.trace_id
    delay = spans["shutdown.prestop_delay"]
    assert (delay.end_time_unix_nano - delay.start_time_unix_nano) / 1e9 == pytest.approx(0.3, abs=0.02)
    assert root.start_time_unix_nano == delay.start_time_unix_nano
    found = attributes(root.attributes)
    assert found["shutdown.trigger"] == "prestop"
    assert found["shutdown.outcome"] == "clean"
    assert found["shutdown.drain_end_source"] == "app_report"
    assert found["shutdown.grace_period_s"] == 10
    assert found["shutdown.margin_s"] > 9
    assert '"outcome":"clean"' in found["shutdown.report"]
    assert "readiness failing" in {event.name for event in root.events}
    assert root.status.code != root.status.STATUS_CODE_ERROR


def test_tracing_non_clean_outcome_sets_error_status(start_sidecar: StartSidecar) -> None:
    with otlp_receiver() as receiver:
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint}
        sidecar = start_sidecar("--grace-period", "1.5", "--prestop-delay", "0.1", "--report-reserve", "0.5", env=env)
        sidecar.send_signal(signal.SIGTERM)
        assert sidecar.wait(timeout=5) == 0
    spans = [span for scope in receiver.requests[0].resource_spans[0].scope_spans for span in scope.spans]
    root = next(span for span in spans if span.name == "shutdown")
    assert root.status.code == root.status.STATUS_CODE_ERROR
    assert "signal" in {event.name for event in root.events}


@pytest.mark.parametrize("fault", ["refused", "silent", "503"])
def test_tracing_failing_collector_is_named_and_bounded_by_the_deadline(
    start_sidecar: StartSidecar, silent_port: int, fault: str
) -> None:
    with otlp_receiver(status=503) as unavailable:
        endpoint = {
            "refused": f"http://127.0.0.1:{free_port()}",
            "silent": f"http://127.0.0.1:{silent_port}",
            "503": unavailable.endpoint,
        }[fault]
        sidecar = start_sidecar(
            "--grace-period", "3", "--prestop-delay", "0.1", "--report-reserve", "1.2",
            env={"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint},
        )  # fmt: skip
        # The exit's time from a pidfd opened before the signal: the observer's own wait (Popen's
        # polling, up to 50 ms late) must not count against the sidecar's deadline.
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            exited = pool.submit(wait_for_exit, sidecar.proc.pid, 10, time.monotonic)
            sent = sidecar.send_signal(signal.SIGTERM)
            probes: list[float] = []
            with httpx.Client(timeout=2) as client:
                while sidecar.proc.poll() is None:
                    started = time.monotonic()
                    try:
                        client.get(sidecar.url("/readyz"))
                    except httpx.TransportError:
                        break
                    probes.append(time.monotonic() - started)
            assert sidecar.wait(timeout=5) == 0
            assert exited.result() - sent < 3, "the process outlived the deadline"
    errors = sidecar.report()["errors"]
    assert len(errors) == 1
    assert errors[0].startswith("otlp: ")
    probes.sort()
    assert probes[int(len(probes) * 0.99)] < 0.05


def test_tracing_opentelemetry_is_not_imported_unless_configured() -> None:
    code = "import sys, sidecar.cli, sidecar.assembly; print(any(m.startswith('opentelemetry') for m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True)
    assert result.stdout.strip() == "False"


@pytest.mark.parametrize(
    ("env", "name"),
    [
        pytest.param({"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER", id="exporter"),
        pytest.param(
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4318", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
            "OTEL_EXPORTER_OTLP_PROTOCOL",
            id="grpc",
        ),
    ],
)
def test_tracing_unsupported_configuration_exits_2_naming_the_variable(env: dict[str, str], name: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "sidecar", "serve", "--port", "0"],
        capture_output=True, text=True, timeout=30, check=False, env={"PATH": "/usr/bin:/bin", **env},
    )  # fmt: skip
    assert result.returncode == 2
    assert name in result.stderr


# On the sidecar's sys.path as sitecustomize: the import of the tracing module (the OpenTelemetry
# SDK and exporter) takes 1.5 s longer, and its start is written down (CLOCK_MONOTONIC, which this
# process reads too).
SLOW_TRACING_IMPORT = """
import os, sys, time

class SlowTracingImport:
    def find_spec(self, name, path, target=None):
        if name == "sidecar.telemetry.tracing":
            time.sleep(1.5)
            with open(os.environ["TRACING_IMPORT_RESUMED_AT"], "w") as out:
                out.write(repr(time.monotonic()))
        return None  # the ordinary finders import it

sys.meta_path.insert(0, SlowTracingImport())
"""


def test_tracing_a_sigterm_during_the_deferred_sdk_import_still_exports_the_trace(
    start_sidecar: StartSidecar, tmp_path: Path
) -> None:
    """The SDK is imported on a thread once the admin port answers; a native sidecar's SIGTERM
    (the report at once) that lands during that import waits for it and exports the trace."""
    (tmp_path / "sitecustomize.py").write_text(SLOW_TRACING_IMPORT)
    resumed_at = tmp_path / "resumed_at"
    with otlp_receiver() as receiver:
        env = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")])),
            "TRACING_IMPORT_RESUMED_AT": str(resumed_at),
        }
        sidecar = start_sidecar("--grace-period", "6", "--prestop-delay", "0", "--native-sidecar", "true", env=env)
        sent = sidecar.send_signal(signal.SIGTERM)
        assert sidecar.wait(timeout=10) == 0
        assert receiver.received.is_set()
    assert sent < float(resumed_at.read_text()), "the signal came after the import: nothing was tested"
    assert sidecar.report()["errors"] == []
    spans = [span for scope in receiver.requests[0].resource_spans[0].scope_spans for span in scope.spans]
    root = next(span for span in spans if span.name == "shutdown")
    assert attributes(root.attributes)["shutdown.trigger"] == "signal"
