"""connections: the app's listener, its connections and the arrivals of new ones, read from the
pod's shared network namespace. The port's sockets are read by sidecar.drain.port_reader
(sock_diag, or /proc/net/tcp{,6} where the kernel refuses it), and only when the namespace's
TCP counters moved: an idle pod costs one small /proc read a tick.
There is no event for "the last connection closed", so this ticks: every IDLE_TICK before t0,
every SHUTDOWN_TICK after. Arrivals are counted by identity (sidecar.drain.arrivals)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Final

from sidecar.deadline import wait_for_any
from sidecar.drain.arrivals import ArrivalLog, IdentityDiff, OwnListener, UnseenArrivals
from sidecar.drain.port_reader import PortReader, PortSnapshot
from sidecar.drain.sockdiag import PortSockets, read_tcp_counters
from sidecar.lifecycle import DrainEndSource, Phase, Timeline
from sidecar.logs import LOGGER_NAME
from sidecar.parts import Part, ReadinessCheck
from sidecar.telemetry.metrics import ShutdownMetrics
from sidecar.telemetry.report import ConnectionCounts, Observations

logger = logging.getLogger(LOGGER_NAME)

# Before t0 a tick decides whether the port's sockets are dumped (the counters moved) and so how
# precisely an arrival is timed; a dump costs the kernel a walk of its whole connection table.
IDLE_TICK_SECONDS: Final = 0.25
SHUTDOWN_TICK_SECONDS: Final = 0.05
# Before t0 the listener is looked at this often when nothing else moved (readiness, the gauge),
# and, while TcpPassiveOpens counts the arrivals, the port dumped at most this often: the dumps then
# only tell the node's probes apart, and each one walks the kernel's whole connection table.
LISTENER_CHECK_SECONDS: Final = 1.0
# An app that has not bound its port this long after start-up is named in the log, once.
NO_LISTENER_WARNING_SECONDS: Final = 10.0


class ConnectionWatch(Part):
    """Watches the app port: readiness waits for its listener, every new connection is counted
    as an arrival (before and after t0, for the hold and the late-connection figures), and
    `on_drained` is called once the listener is gone and no established connection is left
    (only if a listener was ever seen: a wrong --app-port must not end the drain at once). The
    connections at t0, at the stop and at the drain end go into the report: those at the stop
    that predate t0 are pooled keep-alive connections that endpoint removal never moves."""

    drain_sources = frozenset({DrainEndSource.CONNECTIONS})

    def __init__(
        self,
        port: int,
        *,
        metrics: ShutdownMetrics,
        observations: Observations,
        on_drained: Callable[[], None],
        tables: Iterable[str] | None = None,
        probe_sources: Collection[str] = (),
        counters: Callable[[], tuple[int, int] | None] = read_tcp_counters,
        own_listener: OwnListener | None = None,
    ) -> None:
        """`tables`: read these /proc tables instead of sock_diag (tests). `probe_sources`: the
        node's addresses, whose connections are the kubelet's probes, not traffic."""
        self.port = port
        self.reader = PortReader(port, tables)
        self.metrics = metrics
        self.observations = observations
        self._on_drained = on_drained
        self._counters = counters
        self._shutdown = asyncio.Event()
        self.arrived = asyncio.Event()  # set at each arrival; the hold clears it
        self.started_at = time.monotonic()
        self.arrivals = ArrivalLog(self.started_at)
        self._diff = IdentityDiff(probe_sources)
        self._t0: float | None = None
        self._at_t0: frozenset[str] = frozenset()
        self._last_counters: tuple[int, int] | None = None
        self._own = own_listener or OwnListener()
        self._unseen = UnseenArrivals()
        self.other_listeners: frozenset[int] | None = None  # None: not known (no sock_diag)
        self.last: PortSnapshot | None = None
        self.listener_seen = False
        self.problem: str | None = None  # why arrivals cannot be counted, when they cannot
        self._warned_no_listener = False
        self.counts = ConnectionCounts()
        observations.connections = self.counts  # the report reads them there
        metrics.app_connections_at_stop.set(0)

    @property
    def counting(self) -> str:
        """ "ok", or a short reason the counts are not what they claim."""
        if self.problem is not None:
            return self.problem
        if self.reader.fallback is not None:
            return f"partial: from /proc/net/tcp ({self.reader.fallback})"
        if self.other_listeners:
            ports = ", ".join(str(port) for port in sorted(self.other_listeners)[:5])
            more = ", ..." if len(self.other_listeners) > 5 else ""
            return f"partial: other listeners share the network namespace (ports {ports}{more})"
        return "ok"

    def readiness(self) -> Mapping[str, ReadinessCheck]:
        # In both modes: an app container without a readiness probe of its own counts as ready
        # once it runs, and the pod would join the endpoints before the app listens (simulate
        # --chart showed a slow-starting app drop requests on every new pod).
        return {"app_port": self._listener_check}

    def _listener_check(self) -> str | None:
        if self.last is not None and self.last.listening:
            return None
        return f"nothing listening on port {self.port}"

    def start(self) -> None:
        self._check_listeners()

    def start_fields(self) -> Mapping[str, object]:
        return {"arrivals_counting": self.counting}

    def on_phase_change(self, previous: Phase, current: Phase, timeline: Timeline) -> None:
        # Read at the transition itself, not at the next tick: the stop is the instant the app is
        # told to stop, and what is still connected then is what it drops unless it closes those
        # connections itself.
        if current is Phase.PRESTOP_DELAY:
            self.shutdown_began(timeline.started_at)
        elif current is Phase.DRAIN:
            at_stop = self._sample().established
            self.counts.at_stop = len(at_stop)
            self.counts.at_stop_opened_before_t0 = len(at_stop & self._at_t0)
            self.metrics.app_connections_at_stop.set(len(at_stop))
        elif current is Phase.REPORT:
            self.counts.at_drain_end = len(self._sample().established)

    def shutdown_began(self, t0: float) -> None:
        """Tick fast from now on; the connections now are the baseline for late connections.
        Arrivals read up to now are counted first, at t0: they came before it, and are not late.
        (TcpPassiveOpens is counted a tick behind: what it reads now is counted after t0.)"""
        self._counters_moved()
        self._count_unseen(at=t0)
        self._at_t0 = self._sample(at=t0).established
        self._t0 = t0
        self.counts.at_t0 = len(self._at_t0)
        self._shutdown.set()

    def close(self) -> None:
        self.reader.close()

    def _sample(self, *, listener_only: bool = False, at: float | None = None) -> PortSnapshot:
        """Read the port; unless `listener_only`, count arrivals since the last full read, as
        arrived `at` (default: now)."""
        now = time.monotonic() if at is None else at
        try:
            found = self.reader.read(listener_only=listener_only)
        except OSError as exc:
            if self.problem is None:
                self.problem = f"cannot read the app port's sockets: {exc}"
                logger.warning("arrivals cannot be counted", extra={"fields": {"reason": self.problem}})
            found = PortSockets(self.last is not None and self.last.listening, 0, {})
            listener_only = True
        if listener_only and self.last is not None:
            snapshot = PortSnapshot(found.listening, self.last.established)
        else:
            established = frozenset(f"{addr}:{rport}" for addr, rport, _ in found.established)
            snapshot = PortSnapshot(found.listening, established)
            arrivals = self._diff.arrivals(found.connections)
            if not self._counted_by_counter:  # else TcpPassiveOpens counts them (_count_unseen)
                self._count(arrivals, now)
        self.last = snapshot
        self.listener_seen = self.listener_seen or snapshot.listening
        self.metrics.app_connections.set(len(snapshot.established))
        return snapshot

    def _count(self, count: int, now: float) -> None:
        if count <= 0:
            return
        self.arrivals.add(now, count)
        self.arrived.set()
        self.metrics.app_arrivals.inc(count)
        if self._t0 is not None and now > self._t0:
            after_t0_seconds = now - self._t0
            self.observations.add_late_connections(count, after_t0_seconds)
            self.metrics.late_connections.inc(count)
            self.metrics.last_late_connection.set(after_t0_seconds)

    def _counters_moved(self) -> bool:
        """True when the namespace's TCP counters moved since the last look, or cannot be read."""
        counters = self._counters()
        moved = counters is None or counters != self._last_counters
        self._last_counters = counters
        return moved

    def _check_listeners(self) -> None:
        """TcpPassiveOpens is the app's only while every listener of the namespace is the app's
        port or the sidecar's own; the residual restarts whenever that changes."""
        ports = self.reader.listening_ports()
        others = None if ports is None else frozenset(ports - {self.port, self._own.port})
        if others != self.other_listeners:
            self._unseen.reset()
        self.other_listeners = others

    @property
    def _counted_by_counter(self) -> bool:
        """True while TcpPassiveOpens is the app port's and the sidecar's alone (no other listener)."""
        return self.other_listeners == frozenset()

    def _count_unseen(self, at: float | None = None) -> None:
        """In a namespace of its own, every arrival is counted from TcpPassiveOpens, less the
        sidecar's own accepts and the node's probes the dumps saw: the dumps alone would count
        a connection twice (once from the counter before any dump, once when a dump sees it)."""
        if not self._counted_by_counter or self._last_counters is None:
            return
        passive_opens = self._last_counters[0]
        now = time.monotonic() if at is None else at
        self._count(self._unseen.update(passive_opens, self._own.accepted(), self._diff.ignored), now)

    def _warn_if_never_bound(self) -> None:
        if self.listener_seen or self._warned_no_listener:
            return
        if time.monotonic() - self.started_at >= NO_LISTENER_WARNING_SECONDS:
            self._warned_no_listener = True
            logger.warning(
                "nothing listening on the app port",
                extra={"fields": {"app_port": self.port, "after_seconds": NO_LISTENER_WARNING_SECONDS}},
            )

    async def run(self) -> None:
        self._counters_moved()
        self._sample()
        self._count_unseen()
        last_listener_check = time.monotonic()
        while True:
            if self._shutdown.is_set():
                await asyncio.sleep(SHUTDOWN_TICK_SECONDS)
            else:  # idle: tick slowly, but wake at t0 at once
                await wait_for_any((self._shutdown,), time.monotonic() + IDLE_TICK_SECONDS)
            shutting_down = self._shutdown.is_set()
            listener_due = time.monotonic() - last_listener_check >= LISTENER_CHECK_SECONDS
            if listener_due:
                self._check_listeners()
                last_listener_check = time.monotonic()
            moved = self._counters_moved()
            self._count_unseen()  # every tick: it reads the counter a tick behind
            if moved and (shutting_down or listener_due or not self._counted_by_counter):
                snapshot = self._sample()
            elif shutting_down or listener_due:
                snapshot = self._sample(listener_only=True)
            else:
                continue
            self._warn_if_never_bound()
            if shutting_down and self.listener_seen and not snapshot.listening and not snapshot.established:
                self._on_drained()
                return
