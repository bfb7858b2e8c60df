from __future__ import annotations

import time

import pytest
from prometheus_client import CollectorRegistry

from sidecar.config import Settings, TracingEnvironment, load_settings
from sidecar.telemetry.sinks import ReportSinks
from tests.telemetry.test_pushgateway import Push, pushgateway  # noqa: F401 - the fixture

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
    assert sinks.trace_resource is None
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


def test_sinks_trace_resource_carries_the_pod_identity() -> None:
    resource = ReportSinks(settings(), ON, CollectorRegistry()).trace_resource
    assert resource is not None
    assert resource.attributes["k8s.pod.name"] == "web-7d9f8b6c4-x2kfz"
    assert resource.attributes["k8s.namespace.name"] == "shop"
    assert resource.attributes["service.name"] == "shutdown-sidecar"


def test_sinks_pushgateway_pushes_the_sidecar_registry_under_the_settings_grouping_key(
    pushgateway: tuple[str, list[Push]],  # noqa: F811 - the fixture
) -> None:
    url, pushes = pushgateway
    registry = CollectorRegistry()
    configured = settings(pushgateway_url=url, namespace="shop", workload="web")
    sinks = ReportSinks(configured, OFF, registry).for_deadline(time.monotonic() + 30, [])
    sinks["pushgateway"]({})
    assert [push.path for push in pushes] == ["/metrics/job/shutdown-sidecar/namespace/shop/workload/web"]
