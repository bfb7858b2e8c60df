"""The Prometheus metrics of SPEC.md, on a registry built once at start-up and passed in. Every
series exists from start-up at zero, so increase() and rate() see the very first shutdown.
It must not reach the network or the clock: it only mirrors the timeline it is told about."""

from __future__ import annotations

from typing import Final

# Its submodules, not the package: `serve` imports prometheus_client without its exposition module
# (sidecar.lean_imports).
from prometheus_client import metrics as prometheus_metrics
from prometheus_client.metrics import Counter, Gauge, Histogram
from prometheus_client.registry import CollectorRegistry

from sidecar.lifecycle import SHUTDOWN_PHASES, Outcome, Phase, Timeline
from sidecar.signals import HANDLED_SIGNALS, SHUTDOWN_SIGNALS, signal_name

# Shutdowns take from a fraction of a second (an idle app) to minutes (long-polling, batch work);
# the buckets are dense around common grace periods (30 s, 60 s) so "p95 vs grace" is readable.
DURATION_BUCKETS: Final = (0.1, 0.25, 0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 25, 30, 45, 60, 90, 120, 180, 300, 600)

# Endpoint convergence and prestop holds: seconds to tens of seconds, dense where fixed delays sit.
HOLD_BUCKETS: Final = (0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 2.5, 3, 4, 5, 6, 7.5, 10, 12.5, 15, 20, 30, 60)
# The hold's (mode, released_by) pairs that can happen (sidecar.hold), each a series from start-up.
HOLD_LABELS: Final = (
    ("fixed", "fixed"),
    ("fixed", "interrupted"),
    ("auto", "quiet"),
    ("auto", "maximum"),
    ("auto", "interrupted"),
)

# Bounded label values, created at start-up so each series starts at zero: the signals that start
# a shutdown. The other handled signals (logged and ignored) are counted from their first arrival;
# their names are a fixed set too, but forty zero series per pod would say nothing.
SIGNAL_LABELS: Final = tuple(signal_name(sig) for sig in SHUTDOWN_SIGNALS)
COUNTED_SIGNALS: Final = frozenset(signal_name(sig) for sig in HANDLED_SIGNALS)
PRESTOP_CODES: Final = ("200", "401", "405", "408", "413", "429")


def configure_prometheus_client() -> None:
    """Process-global switches, called once at start-up: `_created` series double the series
    count per pod and say nothing a start timestamp does not."""
    prometheus_metrics.disable_created_metrics()  # type: ignore[no-untyped-call]


class ShutdownMetrics:
    def __init__(self, registry: CollectorRegistry, *, version: str, grace_period_seconds: float) -> None:
        self.registry = registry
        self.ready = Gauge("sidecar_ready", "1 while the pod should receive traffic", registry=registry)
        self.phase = Gauge("sidecar_shutdown_phase", "1 for the current shutdown phase", ["phase"], registry=registry)
        self.grace_period = Gauge(
            "sidecar_grace_period_seconds", "The configured terminationGracePeriodSeconds", registry=registry
        )
        self.start_timestamp = Gauge(
            "sidecar_shutdown_start_timestamp_seconds", "Unix time of t0 (0 before any shutdown)", registry=registry
        )
        self.deadline_timestamp = Gauge(
            "sidecar_shutdown_deadline_timestamp_seconds", "Unix time of t0 + grace period", registry=registry
        )
        self.phase_duration = Histogram(
            "sidecar_shutdown_phase_duration_seconds",
            "How long each shutdown phase lasted",
            ["phase"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.shutdown_duration = Histogram(
            "sidecar_shutdown_duration_seconds",
            "t0 to the measured drain end",
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.margin = Gauge(
            "sidecar_shutdown_margin_seconds",
            "Deadline minus measured drain end (negative: overran); NaN when nothing measured it",
            registry=registry,
        )
        self.shutdowns = Counter("sidecar_shutdowns", "Shutdowns by outcome", ["outcome"], registry=registry)
        self.signals = Counter("sidecar_signals", "Signals received", ["signal"], registry=registry)
        self.prestop_requests = Counter(
            "sidecar_prestop_requests", "/prestop requests by status code", ["code"], registry=registry
        )
        self.prestop_waiting = Gauge(
            "sidecar_prestop_waiting", "/prestop callers waiting for the prestop delay to end", registry=registry
        )
        self.app_connections = Gauge(
            "sidecar_app_connections", "Established connections to the app port", registry=registry
        )
        self.app_connections_at_stop = Gauge(
            "sidecar_app_connections_at_stop",
            "Established connections to the app port when it was told to stop (0 before any shutdown)",
            registry=registry,
        )
        self.app_inflight = Gauge("sidecar_app_inflight", "In-flight requests the app reported", registry=registry)
        self.app_arrivals = Counter(
            "sidecar_app_arrivals",
            "New connections to the app port, the node's probes excluded, from start-up on",
            registry=registry,
        )
        self.app_requests_started = Counter(
            "sidecar_app_requests_started",
            "Requests the app reported it started (the kubelet's probes excluded), from start-up on",
            registry=registry,
        )
        self.late_connections = Counter(
            "sidecar_late_connections", "Connections the app accepted after t0", registry=registry
        )
        self.last_late_connection = Gauge(
            "sidecar_last_late_connection_seconds",
            "Seconds after t0 of the last late connection: the measured endpoint convergence",
            registry=registry,
        )
        self.convergence = Histogram(
            "sidecar_endpoint_convergence_seconds",
            "Per shutdown with traffic: seconds after t0 of the last new connection or reported request (0: none)",
            buckets=HOLD_BUCKETS,
            registry=registry,
        )
        self.hold = Histogram(
            "sidecar_prestop_hold_seconds",
            "How long the prestop hold lasted, by mode and by what released it",
            ["mode", "released_by"],
            buckets=HOLD_BUCKETS,
            registry=registry,
        )
        self.build_info = Gauge("sidecar_build_info", "Build information", ["version"], registry=registry)

        self.build_info.labels(version=version).set(1)
        self.grace_period.set(grace_period_seconds)
        self.ready.set(1)
        for phase in Phase:
            self.phase.labels(phase=phase.value).set(1 if phase is Phase.RUNNING else 0)
        for phase in SHUTDOWN_PHASES:
            self.phase_duration.labels(phase=phase.value)
        for outcome in Outcome:
            self.shutdowns.labels(outcome=outcome.value)
        for name in SIGNAL_LABELS:
            self.signals.labels(signal=name)
        for code in PRESTOP_CODES:
            self.prestop_requests.labels(code=code)
        for mode, released_by in HOLD_LABELS:
            self.hold.labels(mode=mode, released_by=released_by)

    def count_signal(self, name: str) -> None:
        if name in COUNTED_SIGNALS:
            self.signals.labels(signal=name).inc()

    def count_prestop(self, code: int) -> None:
        label = str(code)
        if label in PRESTOP_CODES:
            self.prestop_requests.labels(code=label).inc()

    def on_phase_change(self, previous: Phase, current: Phase, timeline: Timeline) -> None:
        """A Timeline listener: mirror the phase change into the series."""
        self.phase.labels(phase=previous.value).set(0)
        self.phase.labels(phase=current.value).set(1)
        record = timeline.records.get(previous)
        if previous is Phase.RUNNING:
            self.ready.set(0)
            self.start_timestamp.set(timeline.to_wall(timeline.started_at))
            self.deadline_timestamp.set(timeline.to_wall(timeline.deadline))
        elif record is not None and record.end is not None and (previous is not Phase.DRAIN or timeline.drained):
            # An app that exited before its stop signal had no drain (outcome app_exit): no 0 s observed.
            self.phase_duration.labels(phase=previous.value).observe(record.end - record.start)
        if current is Phase.REPORT:
            self._observe_drain(timeline)

    def _observe_drain(self, timeline: Timeline) -> None:
        if timeline.outcome is not None:
            self.shutdowns.labels(outcome=timeline.outcome.value).inc()
        margin = timeline.margin_seconds  # None unless a source measured the drain end
        self.margin.set(float("nan") if margin is None else margin)
        if margin is not None:  # t0 -> drain end = grace period - margin
            self.shutdown_duration.observe(timeline.budget.grace_period_seconds - margin)
