from __future__ import annotations

import math

from prometheus_client import CollectorRegistry

from sidecar.deadline import Budget
from sidecar.lifecycle import SHUTDOWN_PHASES, DrainEndSource, Outcome, Phase, Timeline, Trigger
from sidecar.telemetry.metrics import PRESTOP_CODES, SIGNAL_LABELS, ShutdownMetrics


def make() -> tuple[ShutdownMetrics, Timeline]:
    metrics = ShutdownMetrics(CollectorRegistry(), version="1.2.3", grace_period_seconds=30)
    timeline = Timeline(Budget(30, 5, 1), wall_clock=lambda: 1_700_000_000.0)
    timeline.add_listener(metrics.on_phase_change)
    return metrics, timeline


def test_metrics_every_series_exists_at_zero_from_startup() -> None:
    metrics, _ = make()
    value = metrics.registry.get_sample_value
    assert value("sidecar_ready") == 1
    assert value("sidecar_grace_period_seconds") == 30
    assert value("sidecar_build_info", {"version": "1.2.3"}) == 1
    assert value("sidecar_shutdown_phase", {"phase": "running"}) == 1
    for phase in ("prestop_delay", "drain", "report", "done"):
        assert value("sidecar_shutdown_phase", {"phase": phase}) == 0
    for outcome in Outcome:
        assert value("sidecar_shutdowns_total", {"outcome": outcome.value}) == 0
    for name in SIGNAL_LABELS:
        assert value("sidecar_signals_total", {"signal": name}) == 0
    for code in PRESTOP_CODES:
        assert value("sidecar_prestop_requests_total", {"code": code}) == 0
    for phase in SHUTDOWN_PHASES:
        assert value("sidecar_shutdown_phase_duration_seconds_count", {"phase": phase.value}) == 0
    for name in (
        "sidecar_shutdown_start_timestamp_seconds",
        "sidecar_shutdown_deadline_timestamp_seconds",
        "sidecar_shutdown_margin_seconds",
        "sidecar_app_connections",
        "sidecar_app_inflight",
        "sidecar_late_connections_total",
        "sidecar_last_late_connection_seconds",
        "sidecar_shutdown_duration_seconds_count",
    ):
        assert value(name) == 0, name


def test_metrics_no_created_series_are_exported() -> None:
    metrics, _ = make()
    names = {sample.name for family in metrics.registry.collect() for sample in family.samples}
    assert not [name for name in names if name.endswith("_created")]


def test_metrics_mirror_a_clean_shutdown() -> None:
    metrics, timeline = make()
    value = metrics.registry.get_sample_value
    timeline.begin(Trigger.SIGNAL, now=100)
    assert value("sidecar_ready") == 0
    assert value("sidecar_shutdown_start_timestamp_seconds") == 1_700_000_000.0
    assert value("sidecar_shutdown_deadline_timestamp_seconds") == 1_700_000_030.0
    timeline.advance(Phase.DRAIN, now=105)
    timeline.end_drain(DrainEndSource.APP_REPORT, Outcome.CLEAN, now=112)
    assert value("sidecar_shutdown_phase", {"phase": "report"}) == 1
    assert value("sidecar_shutdown_phase", {"phase": "drain"}) == 0
    assert value("sidecar_shutdowns_total", {"outcome": "clean"}) == 1
    assert value("sidecar_shutdown_margin_seconds") == 18
    assert value("sidecar_shutdown_duration_seconds_sum") == 12
    assert value("sidecar_shutdown_phase_duration_seconds_sum", {"phase": "prestop_delay"}) == 5
    assert value("sidecar_shutdown_phase_duration_seconds_sum", {"phase": "drain"}) == 7


def test_metrics_unmeasured_drain_leaves_margin_nan_and_duration_unobserved() -> None:
    metrics, timeline = make()
    timeline.begin(Trigger.SIGNAL, now=0)
    timeline.advance(Phase.DRAIN, now=5)
    timeline.end_drain(DrainEndSource.DEADLINE, Outcome.UNKNOWN, now=29)
    margin = metrics.registry.get_sample_value("sidecar_shutdown_margin_seconds")
    assert margin is not None
    assert math.isnan(margin)
    assert metrics.registry.get_sample_value("sidecar_shutdown_duration_seconds_count") == 0
    assert metrics.registry.get_sample_value("sidecar_shutdowns_total", {"outcome": "unknown"}) == 1


def test_metrics_app_exit_observes_no_drain_and_no_margin() -> None:
    metrics, timeline = make()
    value = metrics.registry.get_sample_value
    timeline.begin(Trigger.SIGNAL, now=0)
    timeline.advance(Phase.DRAIN, now=5)
    timeline.end_drain(DrainEndSource.PROCESS_EXIT, Outcome.APP_EXIT, now=5, reason="it exited during the hold")
    assert value("sidecar_shutdowns_total", {"outcome": "app_exit"}) == 1
    assert value("sidecar_shutdown_phase_duration_seconds_count", {"phase": "prestop_delay"}) == 1
    assert value("sidecar_shutdown_phase_duration_seconds_count", {"phase": "drain"}) == 0
    assert value("sidecar_shutdown_duration_seconds_count") == 0
    assert math.isnan(value("sidecar_shutdown_margin_seconds") or 0.0)


def test_metrics_every_handled_signal_is_counted_the_shutdown_ones_from_zero() -> None:
    metrics, _ = make()
    assert SIGNAL_LABELS == ("SIGTERM", "SIGINT", "SIGQUIT")
    value = metrics.registry.get_sample_value
    assert value("sidecar_signals_total", {"signal": "SIGUSR1"}) is None
    for name in ("SIGQUIT", "SIGUSR1", "SIGRTMIN+3"):
        metrics.count_signal(name)
        assert value("sidecar_signals_total", {"signal": name}) == 1


def test_metrics_unknown_labels_are_not_created() -> None:
    metrics, _ = make()
    metrics.count_signal("SIGSEGV")  # not a signal the sidecar handles
    metrics.count_prestop(418)
    assert metrics.registry.get_sample_value("sidecar_signals_total", {"signal": "SIGSEGV"}) is None
    assert metrics.registry.get_sample_value("sidecar_prestop_requests_total", {"code": "418"}) is None
