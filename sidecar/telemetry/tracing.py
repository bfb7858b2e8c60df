"""The shutdown as an OpenTelemetry trace: root span `shutdown` (t0 -> report), children
`shutdown.prestop_delay` and `shutdown.drain`, built from the finished timeline and exported
over OTLP/HTTP by the report, in its thread, with a timeout that ends at the report's deadline.
Imported only when tracing is configured: the SDK costs start-up time and memory."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import Any, Final

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import OTELResourceDetector, Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode

from sidecar import __version__
from sidecar.deadline import call_timeout
from sidecar.telemetry.delivery import ReportSink
from sidecar.telemetry.report import ShutdownEvent

SERVICE_NAME: Final = "shutdown-sidecar"


def nanoseconds(unix_seconds: float) -> int:
    return int(unix_seconds * 1e9)


def build_resource(k8s_attributes: Mapping[str, str]) -> Resource:
    """The downward-API identity, overridden by OTEL_RESOURCE_ATTRIBUTES / OTEL_SERVICE_NAME."""
    from_environment = OTELResourceDetector().detect()
    defaults = Resource({"service.name": SERVICE_NAME, "service.version": __version__, **k8s_attributes})
    return Resource.create().merge(defaults).merge(from_environment)


def build_spans(
    document: Mapping[str, Any], events: Sequence[ShutdownEvent], resource: Resource, ended_at: float
) -> Sequence[ReadableSpan]:
    """The trace of one shutdown, from the final report document (Unix seconds)."""
    finished = InMemorySpanExporter()
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(SimpleSpanProcessor(finished))
    tracer = provider.get_tracer("sidecar", __version__)
    attributes: dict[str, str | float] = {
        "shutdown.trigger": document["trigger"] or "",
        "shutdown.grace_period_s": float(document["grace_period_seconds"]),
        "shutdown.prestop_delay_s": float(document["prestop_delay_seconds"]),
        "shutdown.outcome": document["outcome"] or "",
        "shutdown.drain_end_source": document["drain_end_source"] or "",
    }
    if document["margin_seconds"] is not None:
        attributes["shutdown.margin_s"] = float(document["margin_seconds"])
    attributes["shutdown.report"] = json.dumps(document, separators=(",", ":"), default=str)
    root = tracer.start_span("shutdown", start_time=nanoseconds(document["t0"]), attributes=attributes)
    context = trace.set_span_in_context(root)
    for phase in ("prestop_delay", "drain"):
        record = document["phases"].get(phase)
        if record is not None and record["end"] is not None:
            child = tracer.start_span(f"shutdown.{phase}", context=context, start_time=nanoseconds(record["start"]))
            child.end(end_time=nanoseconds(record["end"]))
    for name, at, event_attributes in events:
        root.add_event(name, attributes=dict(event_attributes), timestamp=nanoseconds(at))
    if document["outcome"] != "clean":
        reason = document.get("outcome_reason")
        root.set_status(Status(StatusCode.ERROR, f"outcome {document['outcome']}" + (f": {reason}" if reason else "")))
    root.end(end_time=nanoseconds(ended_at))
    return finished.get_finished_spans()


def otlp_trace_sink(resource: Resource, events: Sequence[ShutdownEvent], deadline: float) -> ReportSink:
    """A report sink exporting the trace. force_flush is not used: it ignores its timeout; the
    exporter gets an explicit one (the SDK would read OTEL_EXPORTER_OTLP_TIMEOUT in seconds)."""

    def export(document: Mapping[str, Any]) -> None:
        spans = build_spans(document, events, resource, ended_at=time.time())
        exporter = OTLPSpanExporter(timeout=call_timeout(deadline))
        try:
            if exporter.export(spans) is not SpanExportResult.SUCCESS:
                raise RuntimeError("the OTLP endpoint did not accept the spans")
        finally:
            exporter.shutdown()  # type: ignore[no-untyped-call]

    return export
