"""Where the final report goes besides the termination log and the log line: the Pushgateway and
an OTLP trace, each when configured. Builds the sinks; delivering them is sidecar.telemetry.report's
job. The OpenTelemetry SDK is imported only when traces are on: it costs start-up time and memory."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from prometheus_client.registry import CollectorRegistry

from sidecar.config import Settings, TracingEnvironment
from sidecar.deadline import SINK_RESERVE_SECONDS
from sidecar.telemetry.delivery import ReportSink
from sidecar.telemetry.pushgateway import grouping_key, pushgateway_sink
from sidecar.telemetry.report import ShutdownEvent


class ReportSinks:
    """Built at start-up (so a bad OTEL_* setup fails before t0); `for_deadline` gives the sinks of
    one report, each bounded by the pod's deadline less the local write's reserve."""

    def __init__(self, settings: Settings, tracing: TracingEnvironment, registry: CollectorRegistry) -> None:
        self.settings = settings
        self.registry = registry
        self.trace_resource: Any = None
        if tracing.enabled:
            from sidecar.telemetry.tracing import build_resource

            self.trace_resource = build_resource(tracing.k8s_attributes)

    def for_deadline(self, deadline: float, events: Sequence[ShutdownEvent]) -> dict[str, ReportSink]:
        sink_deadline = deadline - SINK_RESERVE_SECONDS
        sinks: dict[str, ReportSink] = {}
        if self.settings.pushgateway_url is not None:
            key = grouping_key(self.settings.namespace, self.settings.workload)
            sinks["pushgateway"] = pushgateway_sink(self.settings.pushgateway_url, self.registry, key, sink_deadline)
        if self.trace_resource is not None:
            from sidecar.telemetry.tracing import otlp_trace_sink

            sinks["otlp"] = otlp_trace_sink(self.trace_resource, events, sink_deadline)
        return sinks
