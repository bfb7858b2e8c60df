"""`serve` mode: the sidecar in its own container next to the app. Wires the timeline, metrics,
report, admin server and signals together, runs the shutdown sequence to its end and returns
the exit status. Owns no behaviour of its own beyond that wiring."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import time

from prometheus_client import CollectorRegistry

from sidecar import __version__
from sidecar.config import Settings
from sidecar.http import create_app
from sidecar.lifecycle import Budget, Phase, Timeline
from sidecar.logs import LOGGER_NAME
from sidecar.server import AdminServer, build_config
from sidecar.shutdown import DeadlineWatchdog, ShutdownSequence
from sidecar.signals import install_signal_handlers
from sidecar.telemetry.metrics import ShutdownMetrics
from sidecar.telemetry.report import Document, deliver_report, status_document

logger = logging.getLogger(LOGGER_NAME)


def log_phase_change(previous: Phase, current: Phase, timeline: Timeline) -> None:
    fields: dict[str, object] = {"from": previous.value, "to": current.value}
    if timeline.t0 is not None:
        fields["after_t0_seconds"] = round(time.monotonic() - timeline.t0, 6)
    if previous is Phase.RUNNING and timeline.trigger is not None:
        fields["trigger"] = timeline.trigger.value
    if current is Phase.REPORT and timeline.outcome is not None:
        fields["outcome"] = timeline.outcome.value
        fields["drain_end_source"] = None if timeline.drain_end_source is None else timeline.drain_end_source.value
    logger.info("phase changed", extra={"fields": fields})


def budget_of(settings: Settings) -> Budget:
    return Budget(
        grace_period_seconds=settings.grace_period,
        prestop_delay_seconds=settings.prestop_delay,
        report_reserve_seconds=settings.report_reserve,
    )


async def serve(settings: Settings, sock: socket.socket) -> int:
    """Serve the admin endpoints until a shutdown has run to done; returns the exit status."""
    timeline = Timeline(budget_of(settings))
    metrics = ShutdownMetrics(CollectorRegistry(), version=__version__, grace_period_seconds=settings.grace_period)
    timeline.add_listener(metrics.on_phase_change)
    timeline.add_listener(log_phase_change)
    watchdog = DeadlineWatchdog()
    watchdog.start()
    timeline.add_listener(lambda previous, _, ended: watchdog.arm(ended.deadline))

    def status() -> Document:
        return status_document(timeline, time.monotonic())

    async def report(ended: Timeline) -> None:
        await deliver_report(status(), sinks={}, termination_log=settings.termination_log, deadline=ended.deadline)

    sequence = ShutdownSequence(timeline, report=report)

    def shutdown_check() -> str | None:
        return f"shutting down (phase {timeline.phase})" if timeline.is_shutting_down else None

    app = create_app(
        sequence=sequence,
        metrics=metrics,
        status=status,
        readiness={"shutdown": shutdown_check},
        admin_token=settings.admin_token,
    )
    server = AdminServer(build_config(app))

    def on_signal(sig: signal.Signals) -> None:
        phase = timeline.phase.value
        sequence.on_signal(sig)  # first: readiness fails before anything is logged or counted
        metrics.count_signal(sig.name)
        logger.info("signal received", extra={"fields": {"signal": sig.name, "phase": phase}})

    uninstall_signals = install_signal_handlers(asyncio.get_running_loop(), on_signal)
    server_task = asyncio.create_task(server.serve(sockets=[sock]), name="admin-server")
    sequence_task = asyncio.create_task(sequence.run(), name="shutdown-sequence")
    try:
        await server.listening.wait()
        host, port = sock.getsockname()[:2]
        logger.info(
            "sidecar ready",
            extra={"fields": {"host": host, "port": port, "version": __version__, **settings_fields(settings)}},
        )
        done, _ = await asyncio.wait({server_task, sequence_task}, return_when=asyncio.FIRST_COMPLETED)
        if server_task in done:
            # The admin server ended before any shutdown: probes would go unanswered.
            logger.error("admin server stopped unexpectedly", exc_info=server_task.exception())
            return 1
        sequence_task.result()
        return 0
    finally:
        uninstall_signals()
        sequence_task.cancel()
        server.stop()
        await asyncio.gather(server_task, sequence_task, return_exceptions=True)


def settings_fields(settings: Settings) -> dict[str, object]:
    """The settings worth a start-up log line; the admin token only as whether it is set."""
    return {
        "grace_period_seconds": settings.grace_period,
        "prestop_delay_seconds": settings.prestop_delay,
        "report_reserve_seconds": settings.report_reserve,
        "termination_log": settings.termination_log,
        "admin_token_set": settings.admin_token is not None,
    }
