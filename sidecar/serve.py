"""The sidecar assembled: timeline, metrics, drain-end sources, report, admin server and signals,
for both modes: `serve` (own container next to the app) and `run` (the app's entrypoint, with the
app as its child). Runs the shutdown sequence to done and returns the exit status. Wiring only:
each behaviour lives in the module its name says."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import signal
import socket
import time
from collections.abc import Callable, Sequence
from typing import Any

from prometheus_client import CollectorRegistry

from sidecar import __version__
from sidecar.config import Settings, TracingEnvironment
from sidecar.drain.connections import ConnectionWatch, PortSnapshot
from sidecar.drain.process import ProcessExitWatch, find_process
from sidecar.http import ReadinessCheck, create_app
from sidecar.lifecycle import Budget, DrainEndSource, Phase, Timeline
from sidecar.logs import LOGGER_NAME
from sidecar.server import AdminServer, build_config
from sidecar.shutdown import DeadlineWatchdog, ShutdownSequence, wait_for_any
from sidecar.signals import install_signal_handlers
from sidecar.supervisor import Child, SpawnError, install_child_signals
from sidecar.telemetry.metrics import ShutdownMetrics
from sidecar.telemetry.pushgateway import grouping_key, pushgateway_sink
from sidecar.telemetry.report import LOCAL_WRITE_RESERVE_SECONDS, Document, ReportSink, deliver_report, status_document

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


def on_phase(phase: Phase, action: Callable[[Timeline], None]) -> Callable[[Phase, Phase, Timeline], None]:
    """A timeline listener that runs `action` when `phase` begins."""

    def listener(_: Phase, current: Phase, timeline: Timeline) -> None:
        if current is phase:
            action(timeline)

    return listener


@dataclasses.dataclass
class LateConnections:
    count: int = 0
    last_seconds: float | None = None


class Sidecar:
    """Builds every part from the settings; `run()` serves until the shutdown is done."""

    def __init__(self, settings: Settings, command: Sequence[str] | None, tracing: TracingEnvironment) -> None:
        self.settings = settings
        self.events: list[tuple[str, float, dict[str, str]]] = []  # for the trace: name, Unix time, attributes
        self.trace_resource: Any = None
        if tracing.enabled:
            from sidecar.telemetry.tracing import build_resource  # the SDK loads only when traces are on

            self.trace_resource = build_resource(tracing.k8s_attributes)
        self.loop = asyncio.get_running_loop()
        self.timeline = Timeline(budget_of(settings))
        self.metrics = ShutdownMetrics(
            CollectorRegistry(), version=__version__, grace_period_seconds=settings.grace_period
        )
        self.late = LateConnections()
        self.errors: list[str] = []  # sources that could not be used, named in the report
        self.child = None if command is None else Child(command, on_exit=self._child_exited)
        self.child_exited = asyncio.Event()
        self.scraped_after_report = asyncio.Event()
        self.process_watch: ProcessExitWatch | None = None
        if settings.watch_pid is not None or settings.watch_process is not None:
            self.process_watch = ProcessExitWatch(self.loop, self._watched_process_exited)
        self.connection_watch: ConnectionWatch | None = None
        if settings.app_port is not None:
            self.connection_watch = ConnectionWatch(
                settings.app_port,
                on_sample=self._port_sampled,
                on_late=self._late_connections,
                on_drained=self._connections_drained,
            )
        sources = set()
        if self.child is not None or self.process_watch is not None:
            sources.add(DrainEndSource.PROCESS_EXIT)
        if self.connection_watch is not None:
            sources.add(DrainEndSource.CONNECTIONS)
        if settings.native_sidecar:
            sources.add(DrainEndSource.SIDECAR_SIGTERM)
        self.sequence = ShutdownSequence(
            self.timeline, report=self._report, sources=frozenset(sources), native_sidecar=settings.native_sidecar
        )
        self.watchdog = DeadlineWatchdog()
        for listener in (
            self.metrics.on_phase_change,
            log_phase_change,
            on_phase(Phase.PRESTOP_DELAY, lambda timeline: self.watchdog.arm(timeline.deadline)),
            on_phase(Phase.PRESTOP_DELAY, self._shutdown_began),
            on_phase(Phase.DRAIN, self._tell_app_to_stop),
            on_phase(Phase.REPORT, self._kill_app_if_still_running),
        ):
            self.timeline.add_listener(listener)

    # --- readiness and liveness ------------------------------------------------------------------

    def readiness(self) -> dict[str, ReadinessCheck]:
        checks: dict[str, ReadinessCheck] = {"shutdown": self._shutdown_check}
        if self.child is not None:
            checks["app"] = self._app_check
        if self.connection_watch is not None:
            # In both modes: an app container without a readiness probe of its own counts as
            # ready once it runs, and the pod would join the endpoints before the app listens
            # (simulate --chart showed a slow-starting app drop requests on every new pod).
            checks["app_port"] = self._app_port_check
        return checks

    def liveness(self) -> dict[str, ReadinessCheck]:
        return {} if self.child is None else {"app": self._app_check}

    def _shutdown_check(self) -> str | None:
        return f"shutting down (phase {self.timeline.phase})" if self.timeline.is_shutting_down else None

    def _app_check(self) -> str | None:
        child = self.child
        if child is None or child.is_running:
            return None
        return "not started" if child.pid is None else f"exited with status {child.exit_status}"

    def _app_port_check(self) -> str | None:
        watch = self.connection_watch
        if watch is None or (watch.last is not None and watch.last.listening):
            return None
        return f"nothing listening on port {watch.port}"

    # --- events from the sources -----------------------------------------------------------------

    def _child_exited(self, status: int) -> None:
        self.events.append(("app exit", time.time(), {"status": str(status)}))
        logger.info("app exited", extra={"fields": {"status": status, "phase": self.timeline.phase.value}})
        self.child_exited.set()
        self.sequence.app_exited()

    def _watched_process_exited(self) -> None:
        self.sequence.report_drain_end(DrainEndSource.PROCESS_EXIT)

    def _connections_drained(self) -> None:
        self.sequence.report_drain_end(DrainEndSource.CONNECTIONS)

    def _port_sampled(self, snapshot: PortSnapshot) -> None:
        self.metrics.app_connections.set(len(snapshot.established))

    def _late_connections(self, count: int, after_t0_seconds: float) -> None:
        self.late.count += count
        self.late.last_seconds = after_t0_seconds
        self.metrics.late_connections.inc(count)
        self.metrics.last_late_connection.set(after_t0_seconds)

    # --- phase actions ---------------------------------------------------------------------------

    def _shutdown_began(self, timeline: Timeline) -> None:
        self.events.append(("readiness failing", timeline.to_wall(timeline.started_at), {}))
        if self.connection_watch is not None and timeline.t0 is not None:
            self.connection_watch.shutdown_began(timeline.t0)
        if self.process_watch is not None:
            self._watch_process(self.process_watch)

    def _watch_process(self, watch: ProcessExitWatch) -> None:
        # Resolved at t0, not at start-up: the app container may start after the sidecar, and
        # may have restarted since.
        settings = self.settings
        pid = settings.watch_pid
        if pid is None and settings.watch_process is not None:
            pid = find_process(settings.watch_process, exclude=frozenset({os.getpid()}))
        try:
            if pid is None:
                raise ProcessLookupError(f"no process matches {settings.watch_process!r}")
            watch.watch(pid)
        except OSError as exc:
            self.errors.append(f"process_exit: cannot watch the app process: {exc}")
            logger.warning("cannot watch the app process", extra={"fields": {"error": str(exc)}})
        else:
            logger.info("watching the app process", extra={"fields": {"pid": pid}})

    def _tell_app_to_stop(self, _: Timeline) -> None:
        if self.child is not None and self.child.is_running:
            sig = signal.Signals[self.settings.stop_signal]
            self.child.send(sig)
            self.events.append(("stop signal sent", time.time(), {"signal": sig.name}))
            logger.info("stop signal sent", extra={"fields": {"signal": sig.name, "pid": self.child.pid}})

    def _kill_app_if_still_running(self, _: Timeline) -> None:
        if self.child is not None and self.child.is_running:
            self.child.kill_group()
            logger.warning("app still running at the drain deadline: SIGKILL sent to its process group")

    # --- report ----------------------------------------------------------------------------------

    def status(self) -> Document:
        document = status_document(
            self.timeline,
            time.monotonic(),
            late_connections=self.late.count,
            last_late_connection_seconds=self.late.last_seconds,
            errors=self.errors,
        )
        t0 = self.timeline.t0
        if t0 is not None and self.sequence.observed:
            document["drain_end_observed"] = {
                source.value: round(at - t0, 6) for source, at in self.sequence.observed.items()
            }
        if self.child is not None:
            document["app_exit_status"] = self.child.exit_status
        return document

    async def _report(self, timeline: Timeline) -> None:
        if self.child is not None and not self.child_exited.is_set():
            # After the SIGKILL: the exit status belongs in the report; the reap is immediate.
            await wait_for_any((self.child_exited,), time.monotonic() + 0.1)
        sinks: dict[str, ReportSink] = {}
        if self.settings.pushgateway_url is not None:
            key = grouping_key(self.settings.namespace, self.settings.workload)
            sinks["pushgateway"] = pushgateway_sink(
                self.settings.pushgateway_url,
                self.metrics.registry,
                key,
                timeline.deadline - LOCAL_WRITE_RESERVE_SECONDS,
            )
        if self.trace_resource is not None:
            from sidecar.telemetry.tracing import otlp_trace_sink

            sinks["otlp"] = otlp_trace_sink(
                self.trace_resource, self.events, timeline.deadline - LOCAL_WRITE_RESERVE_SECONDS
            )
        await deliver_report(
            self.status(), sinks=sinks, termination_log=self.settings.termination_log, deadline=timeline.deadline
        )

    def _scraped(self) -> None:
        if self.timeline.phase is Phase.DONE:
            self.scraped_after_report.set()

    async def _linger(self) -> None:
        """Keep serving /metrics after the report until one scrape has taken the final values,
        for at most --linger seconds and never past deadline - report reserve."""
        if self.settings.linger <= 0:
            return
        until = min(time.monotonic() + self.settings.linger, self.timeline.drain_deadline)
        if until <= time.monotonic():
            return
        logger.info(
            "lingering until one /metrics scrape", extra={"fields": {"seconds": round(until - time.monotonic(), 3)}}
        )
        scraped = await wait_for_any((self.scraped_after_report,), until)
        logger.info("linger ended", extra={"fields": {"scraped": scraped}})

    # --- running ---------------------------------------------------------------------------------

    def on_signal(self, sig: signal.Signals) -> None:
        phase = self.timeline.phase.value
        self.sequence.on_signal(sig)  # first: readiness fails before anything is logged or counted
        self.metrics.count_signal(sig.name)
        self.events.append(("signal", time.time(), {"signal": sig.name}))
        logger.info("signal received", extra={"fields": {"signal": sig.name, "phase": phase}})

    async def run(self, sock: socket.socket) -> int:
        self.watchdog.start()
        uninstallers = [install_signal_handlers(self.loop, self.on_signal)]
        if self.child is not None:
            uninstallers.append(install_child_signals(self.loop, self.child))
            try:
                self.child.start()
            except SpawnError as exc:
                logger.error("cannot start the app", extra={"fields": {"error": str(exc)}})
                return exc.exit_status
        app = create_app(
            sequence=self.sequence,
            metrics=self.metrics,
            status=self.status,
            readiness=self.readiness(),
            liveness=self.liveness(),
            admin_token=self.settings.admin_token,
            on_scrape=self._scraped,
        )
        server = AdminServer(build_config(app))
        server_task = asyncio.create_task(server.serve(sockets=[sock]), name="admin-server")
        sequence_task = asyncio.create_task(self.sequence.run(), name="shutdown-sequence")
        helpers = [] if self.connection_watch is None else [asyncio.create_task(self.connection_watch.run())]
        try:
            await server.listening.wait()
            host, port = sock.getsockname()[:2]
            fields = {"host": host, "port": port, "version": __version__, **settings_fields(self.settings)}
            if self.child is not None:
                fields["app_pid"] = self.child.pid
            logger.info("sidecar ready", extra={"fields": fields})
            done, _ = await asyncio.wait({server_task, sequence_task}, return_when=asyncio.FIRST_COMPLETED)
            if server_task in done:
                # The admin server ended before any shutdown: probes would go unanswered.
                logger.error("admin server stopped unexpectedly", exc_info=server_task.exception())
                return 1
            sequence_task.result()
            await self._linger()
            return self._exit_status()
        finally:
            for uninstall in uninstallers:
                uninstall()
            if self.process_watch is not None:
                self.process_watch.close()
            server.stop()
            for task in (sequence_task, *helpers):
                task.cancel()
            await asyncio.gather(server_task, sequence_task, *helpers, return_exceptions=True)

    def _exit_status(self) -> int:
        if self.child is None:
            return 0
        # The child's status, as a shell would give it; 137 when it had to be SIGKILLed.
        return self.child.exit_status if self.child.exit_status is not None else 137


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
        "grace_period_seconds": settings.grace_period,
        "prestop_delay_seconds": settings.prestop_delay,
        "report_reserve_seconds": settings.report_reserve,
        "termination_log": settings.termination_log,
        "app_port": settings.app_port,
        "admin_token_set": settings.admin_token is not None,
    }
