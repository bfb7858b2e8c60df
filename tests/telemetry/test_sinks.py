from __future__ import annotations

import concurrent.futures
import threading
import time
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from sidecar.config import Settings, TracingEnvironment, load_settings
from sidecar.lifecycle import DrainEndSource, Outcome
from sidecar.telemetry.sinks import ReportSinks, trace_sink_after_setup
from tests.e2e.otlp_receiver import otlp_receiver
from tests.e2e.test_tracing import attributes
from tests.telemetry.test_pushgateway import Push, pushgateway  # noqa: F401 - the fixture
from tests.telemetry.test_tracing import finished_report

OFF = TracingEnvironment(False, {})
ON = TracingEnvironment(True, {"k8s.pod.name": "web-7d9f8b6c4-x2kfz", "k8s.namespace.name": "shop"})


@pytest.fixture(autouse=True)
def no_otel_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OTEL_RESOURCE_ATTRIBUTES", "OTEL_SERVICE_NAME"):
        monkeypatch.delenv(name, raising=False)


def settings(**flags: str) -> Settings:
    return load_settings({"termination_log": "", **flags}, {})


def sink_names(settings: Settings, tracing: TracingEnvironment) -> set[str]:
    return set(ReportSinks(settings, tracing, CollectorRegistry()).for_deadline(time.monotonic() + 30, []))


def test_sinks_none_when_nothing_is_configured() -> None:
    sinks = ReportSinks(settings(), OFF, CollectorRegistry())
    sinks.start_tracing_setup()
    assert "tracing-setup" not in {thread.name for thread in threading.enumerate()}
    assert sinks.for_deadline(time.monotonic() + 30, []) == {}


@pytest.mark.parametrize(
    ("flags", "tracing", "names"),
    [
        pytest.param({"pushgateway_url": "http://127.0.0.1:9091"}, OFF, {"pushgateway"}, id="pushgateway"),
        pytest.param({}, ON, {"otlp"}, id="otlp"),
        pytest.param({"pushgateway_url": "http://127.0.0.1:9091"}, ON, {"pushgateway", "otlp"}, id="both"),
    ],
)
def test_sinks_one_per_configured_destination(
    flags: dict[str, str], tracing: TracingEnvironment, names: set[str]
) -> None:
    assert sink_names(settings(**flags), tracing) == names


def test_sinks_trace_sink_exports_the_trace_with_the_pod_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    document = finished_report(DrainEndSource.APP_REPORT, Outcome.CLEAN)
    with otlp_receiver() as receiver:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
        sinks = ReportSinks(settings(), ON, CollectorRegistry())
        sinks.start_tracing_setup()
        sinks.for_deadline(time.monotonic() + 30, [])["otlp"](document)
    [request] = receiver.requests
    resource = attributes(request.resource_spans[0].resource.attributes)
    assert resource["k8s.pod.name"] == "web-7d9f8b6c4-x2kfz"
    assert resource["k8s.namespace.name"] == "shop"
    assert resource["service.name"] == "shutdown-sidecar"


def test_sinks_trace_sink_waits_for_the_tracing_setup_no_longer_than_its_deadline() -> None:
    never: concurrent.futures.Future[Any] = concurrent.futures.Future()  # an SDK import that hangs
    export = trace_sink_after_setup(never, [], time.monotonic() + 0.2)
    started = time.monotonic()
    with pytest.raises(TimeoutError, match="not imported before the deadline"):
        export({})
    assert time.monotonic() - started < 5, "the wait is bounded by the sink's deadline"


def test_sinks_pushgateway_pushes_the_sidecar_registry_under_the_settings_grouping_key(
    pushgateway: tuple[str, list[Push]],  # noqa: F811 - the fixture
) -> None:
    url, pushes = pushgateway
    registry = CollectorRegistry()
    configured = settings(pushgateway_url=url, namespace="shop", workload="web")
    sinks = ReportSinks(configured, OFF, registry).for_deadline(time.monotonic() + 30, [])
    sinks["pushgateway"]({})
    assert [push.path for push in pushes] == ["/metrics/job/shutdown-sidecar/namespace/shop/workload/web"]
