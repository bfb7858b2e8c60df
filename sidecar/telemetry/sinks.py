"""Where the final report goes besides the termination log and the log line: the Pushgateway and
an OTLP trace, each when configured. Builds the sinks; delivering them is sidecar.telemetry.report's
job. The OpenTelemetry SDK and exporter are imported only when traces are on, and then on a thread
once the admin port answers: they cost about 200 ms of start-up and 7 MB, and the app's start
waits for the sidecar's readiness."""

from __future__ import annotations

import concurrent.futures
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from prometheus_client.registry import CollectorRegistry

from sidecar.config import Settings, TracingEnvironment
from sidecar.deadline import SINK_RESERVE_SECONDS, call_timeout
from sidecar.telemetry.delivery import ReportSink
from sidecar.telemetry.pushgateway import grouping_key, pushgateway_sink
from sidecar.telemetry.report import ShutdownEvent


class ReportSinks:
    """Built at start-up (a bad OTEL_* setup has failed before, in sidecar.config); `for_deadline`
    gives the sinks of one report, each bounded by the pod's deadline less the local write's
    reserve. `start_tracing_setup()` imports the SDK and builds the trace resource on a thread;
    the trace sink waits for it, in its own thread and within its deadline, so a shutdown that
    begins while it is under way still exports its trace."""

    def __init__(self, settings: Settings, tracing: TracingEnvironment, registry: CollectorRegistry) -> None:
        self.settings = settings
        self.registry = registry
        self._tracing = tracing
        self._trace_setup: concurrent.futures.Future[Any] | None = None
        if tracing.enabled:
            self._trace_setup = concurrent.futures.Future()
        self._setup_started = False
        self._lock = threading.Lock()

    def start_tracing_setup(self) -> None:
        """Import the SDK and build the trace resource on a thread; nothing when traces are off or
        the setup has begun."""
        with self._lock:
            if self._trace_setup is None or self._setup_started:
                return
            self._setup_started = True
        threading.Thread(target=self._set_up_tracing, name="tracing-setup", daemon=True).start()

    def _set_up_tracing(self) -> None:
        assert self._trace_setup is not None  # noqa: S101 - started only when traces are on
        try:
            from sidecar.telemetry.tracing import build_resource

            resource = build_resource(self._tracing.k8s_attributes)
        except BaseException as exc:  # handed to the trace sink, which the report names the error of
            self._trace_setup.set_exception(exc)
        else:
            self._trace_setup.set_result(resource)

    def for_deadline(self, deadline: float, events: Sequence[ShutdownEvent]) -> dict[str, ReportSink]:
        sink_deadline = deadline - SINK_RESERVE_SECONDS
        sinks: dict[str, ReportSink] = {}
        if self.settings.pushgateway_url is not None:
            key = grouping_key(self.settings.namespace, self.settings.workload)
            sinks["pushgateway"] = pushgateway_sink(self.settings.pushgateway_url, self.registry, key, sink_deadline)
        if self._trace_setup is not None:
            self.start_tracing_setup()  # a shutdown that began before the admin port answered
            sinks["otlp"] = trace_sink_after_setup(self._trace_setup, events, sink_deadline)
        return sinks


def trace_sink_after_setup(
    setup: concurrent.futures.Future[Any], events: Sequence[ShutdownEvent], deadline: float
) -> ReportSink:
    """The OTLP trace sink, once the tracing setup has built the resource: waited for in the sink's
    thread, never past `deadline` (time.monotonic())."""

    def export(document: Mapping[str, Any]) -> None:
        try:
            resource = setup.result(timeout=call_timeout(deadline))
        except TimeoutError:
            raise TimeoutError("the OpenTelemetry SDK was not imported before the deadline") from None
        from sidecar.telemetry.tracing import otlp_trace_sink

        otlp_trace_sink(resource, events, deadline)(document)

    return export
