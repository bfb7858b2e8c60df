"""The sidecar assembled: timeline, sequence, metrics, the mode's parts, report, admin server and
signals, wired together; `run()` serves until a shutdown has run to done and returns the exit
status. Wiring only: each behaviour lives in the module its name says."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import time
from collections.abc import Callable, Mapping, Sequence

from prometheus_client.registry import CollectorRegistry

from sidecar import __version__
from sidecar.admin.events import ShutdownEvents
from sidecar.admin.protocol import AdminConnections, connection_cap, raise_fd_limit
from sidecar.admin.routes import create_app
from sidecar.admin.server import AdminConnectionsCollector, AdminServer, build_config
from sidecar.config import Settings, TracingEnvironment
from sidecar.deadline import DeadlineWatchdog, wait_for_any
from sidecar.drain.app_report import AppReport
from sidecar.drain.arrivals import OwnListener
from sidecar.hold import Hold
from sidecar.lifecycle import DrainEndSource, Phase, Timeline
from sidecar.logs import LOGGER_NAME
from sidecar.modes import PartContext, arrival_source, choose_parts
from sidecar.parts import ReadinessCheck
from sidecar.shutdown import ShutdownSequence
from sidecar.signals import install_signal_handlers, signal_name
from sidecar.supervisor import SpawnError, kill_started_groups
from sidecar.telemetry.delivery import deliver_report, termination_log_problem
from sidecar.telemetry.metrics import ShutdownMetrics
from sidecar.telemetry.report import Observations, Report, build_report
from sidecar.telemetry.sinks import ReportSinks

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
        fields["outcome_reason"] = timeline.outcome_reason
    logger.info("phase changed", extra={"fields": fields})


class Sidecar:
    """Builds every part from the settings; `run()` serves until the shutdown is done."""

    def __init__(self, settings: Settings, command: Sequence[str] | None, tracing: TracingEnvironment) -> None:
        self.settings = settings
        self.timeline = Timeline(settings.budget)
        self.metrics = ShutdownMetrics(
            CollectorRegistry(), version=__version__, grace_period_seconds=settings.grace_period_seconds
        )
        self.observations = Observations()
        self.sinks = ReportSinks(settings, tracing, self.metrics.registry)
        self.scraped_after_report = asyncio.Event()
        self.watchdog = DeadlineWatchdog()
        self.watchdog.last_words.append(kill_started_groups)
        # The soft descriptor limit raised to the hard one, and the connection cap fitted under it.
        self.admin_connections = AdminConnections(connection_cap(raise_fd_limit()))
        self.metrics.registry.register(AdminConnectionsCollector(self.admin_connections))
        self.sequence = ShutdownSequence(self.timeline, report=self._report)
        self.app_report = AppReport(
            metrics=self.metrics,
            report_end=lambda: self.sequence.report_drain_end(DrainEndSource.APP_REPORT),
            activity=self.observations.app,
            on_report=self.sequence.app_reporting,
        )
        # The admin port's accepts, for the app's share of the namespace's TcpPassiveOpens.
        self.own_listener = OwnListener(accepted=lambda: self.admin_connections.accepted)
        self.parts = choose_parts(
            settings,
            command,
            PartContext(self.timeline, self.metrics, self.observations, self.sequence, self.own_listener),
        )
        # The drain ends at the most precise source watching (lifecycle.outranks): these, and the
        # app's own report once the app has reported.
        self.sequence.sources = frozenset().union(*(part.drain_sources for part in self.parts))
        self.hold = Hold(
            settings.prestop_delay_seconds,
            settings.hold_rule,
            arrival_source(self.parts),
            metrics=self.metrics,
            requests=self.app_report.requests,
        )
        self.sequence.hold = self.hold
        self.observations.hold = self.hold.document
        listeners = (
            self.metrics.on_phase_change,
            log_phase_change,
            self._on_phase_change,
            self.app_report.on_phase_change,
            self.hold.on_phase_change,
        )
        for listener in listeners:
            self.timeline.add_listener(listener)
        for part in self.parts:
            self.timeline.add_listener(part.on_phase_change)
        # Last, so each event's document holds what the parts recorded at that phase change.
        self.events = ShutdownEvents(self.status)
        self.timeline.add_listener(self.events.on_phase_change)

    def readiness(self) -> dict[str, ReadinessCheck]:
        """Fails from t0 on, and whenever a part says the app cannot serve."""
        checks: dict[str, ReadinessCheck] = {"shutdown": self._shutdown_check}
        for part in self.parts:
            checks.update(part.readiness())
        return checks

    def liveness(self) -> dict[str, ReadinessCheck]:
        return {name: check for part in self.parts for name, check in part.liveness().items()}

    def _shutdown_check(self) -> str | None:
        return f"shutting down (phase {self.timeline.phase})" if self.timeline.is_shutting_down else None

    def _on_phase_change(self, previous: Phase, current: Phase, timeline: Timeline) -> None:
        if current is Phase.PRESTOP_DELAY:
            self.watchdog.arm(timeline.deadline)
            self.observations.add_event("readiness failing", timeline.to_wall(timeline.started_at))

    def on_signal(self, sig: signal.Signals) -> None:
        phase = self.timeline.phase.value
        # First: readiness fails before anything is logged or counted.
        if not any(part.on_signal(sig) for part in self.parts):
            self.sequence.on_signal(sig)
        self.metrics.count_signal(sig.name)
        self.observations.add_event("signal", signal=sig.name)
        logger.info("signal received", extra={"fields": {"signal": sig.name, "phase": phase}})

    def on_other_signal(self, signum: int) -> None:
        """A signal that would have ended the process by default and means nothing here."""
        name = signal_name(signum)
        self.metrics.count_signal(name)
        logger.warning("signal ignored", extra={"fields": {"signal": name, "phase": self.timeline.phase.value}})

    def status(self) -> Report:
        return build_report(self.timeline, time.monotonic(), self.observations, self.sequence.observed)

    async def _report(self, timeline: Timeline) -> None:
        for part in self.parts:
            await part.before_report()
        await deliver_report(
            self.status(),
            sinks=self.sinks.for_deadline(timeline.deadline, self.observations.events),
            termination_log=self.settings.termination_log,
            deadline=timeline.deadline,
        )

    def _scraped(self) -> None:
        if self.timeline.phase is Phase.DONE:
            self.scraped_after_report.set()

    async def _linger(self) -> None:
        """Keep serving /metrics after the report until one scrape has taken the final values,
        for at most --linger seconds and never past deadline - report reserve."""
        if self.settings.linger_seconds <= 0:
            return
        until = min(time.monotonic() + self.settings.linger_seconds, self.timeline.drain_deadline)
        if until <= time.monotonic():
            return
        logger.info(
            "lingering until one /metrics scrape", extra={"fields": {"seconds": round(until - time.monotonic(), 3)}}
        )
        scraped = await wait_for_any((self.scraped_after_report,), until)
        logger.info("linger ended", extra={"fields": {"scraped": scraped}})

    async def run(self, sock: socket.socket) -> int:
        self.watchdog.start()
        self.own_listener.port = sock.getsockname()[1]
        self._warn_of_termination_log()
        self.hold.warn_if_blind()
        # Before anything is spawned (a child inherits the signal mask) and before the server
        # accepts: a signal held since start-up (sidecar.signals.hold_signals) is delivered here.
        uninstall_signals = install_signal_handlers(asyncio.get_running_loop(), self.on_signal, self.on_other_signal)
        try:
            for part in self.parts:
                part.start()
        except SpawnError as exc:
            logger.error("cannot start the app", extra={"fields": {"error": str(exc)}})
            self._close(uninstall_signals)
            return exc.exit_status
        app = create_app(
            sequence=self.sequence,
            metrics=self.metrics,
            status=self.status,
            readiness=self.readiness(),
            liveness=self.liveness(),
            admin_token=self.settings.admin_token,
            on_scrape=self._scraped,
            events=self.events,
            app_report=self.app_report,
        )
        server = AdminServer(build_config(app, self.admin_connections))
        server_task = asyncio.create_task(server.serve(sockets=[sock]), name="admin-server")
        sequence_task = asyncio.create_task(self.sequence.run(), name="shutdown-sequence")
        part_tasks = [asyncio.create_task(part.run(), name=type(part).__name__) for part in self.parts]
        try:
            await server.listening.wait()
            logger.info("sidecar ready", extra={"fields": self._start_fields(sock)})
            # Only now: the OpenTelemetry SDK's import would hold the first probe's answer back.
            self.sinks.start_tracing_setup()
            done, _ = await asyncio.wait({server_task, sequence_task}, return_when=asyncio.FIRST_COMPLETED)
            if server_task in done:
                # The admin server ended before any shutdown: probes would go unanswered.
                logger.error("admin server stopped unexpectedly", exc_info=server_task.exception())
                return 1
            sequence_task.result()
            await self._linger()
            return next((status for part in self.parts if (status := part.exit_status()) is not None), 0)
        finally:
            self._close(uninstall_signals)
            server.stop()
            for task in (sequence_task, *part_tasks):
                task.cancel()
            await asyncio.gather(server_task, sequence_task, *part_tasks, return_exceptions=True)

    def _close(self, uninstall_signals: Callable[[], None]) -> None:
        uninstall_signals()
        self.app_report.close()
        for part in self.parts:
            part.close()

    def _warn_of_termination_log(self) -> None:
        # Found at start, not at the deadline: the report would be missing from the pod's status.
        path = self.settings.termination_log
        if path is not None and (reason := termination_log_problem(path)) is not None:
            logger.warning(
                "termination log not writable: the report will not be written there",
                extra={"fields": {"path": path, "reason": reason}},
            )

    def _start_fields(self, sock: socket.socket) -> Mapping[str, object]:
        host, port = sock.getsockname()[:2]
        fields = {
            "host": host,
            "port": port,
            "version": __version__,
            "admin_max_connections": self.admin_connections.max_connections,
            **settings_fields(self.settings),
        }
        for part in self.parts:
            fields.update(part.start_fields())
        return fields


async def serve(
    settings: Settings,
    sock: socket.socket,
    command: Sequence[str] | None = None,
    tracing: TracingEnvironment | None = None,
) -> int:
    """Serve until a shutdown has run to done; with `command`, as its wrapper (run mode)."""
    return await Sidecar(settings, command, tracing or TracingEnvironment(False, {})).run(sock)


def settings_fields(settings: Settings) -> dict[str, object]:
    """The settings worth a start-up log line; the admin token only as whether it is set."""
    return {
        "grace_period_seconds": settings.grace_period_seconds,
        "prestop_delay_seconds": "auto" if settings.prestop_delay_seconds is None else settings.prestop_delay_seconds,
        "report_reserve_seconds": settings.report_reserve_seconds,
        "termination_log": settings.termination_log,
        "app_port": settings.app_port,
        "admin_token_set": settings.admin_token is not None,
    }
