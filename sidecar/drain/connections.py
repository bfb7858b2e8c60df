"""connections: the app's listener and its established connections, read from /proc/net/tcp and
/proc/net/tcp6 (containers of a pod share one network namespace). There is no event for "the
last connection closed", so this samples: every IDLE_INTERVAL before t0 (for the gauge and run
mode's readiness), every SHUTDOWN_INTERVAL after. A connection that opens and closes between
two samples is not seen: late-connection counts are a lower bound."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Final

from sidecar.deadline import wait_for_any
from sidecar.lifecycle import DrainEndSource, Phase, Timeline
from sidecar.parts import Part, ReadinessCheck
from sidecar.telemetry.metrics import ShutdownMetrics
from sidecar.telemetry.report import ConnectionCounts, Observations

TCP_TABLES: Final = ("/proc/net/tcp", "/proc/net/tcp6")
STATE_ESTABLISHED: Final = "01"
STATE_LISTEN: Final = "0A"
IDLE_INTERVAL_SECONDS: Final = 1.0
SHUTDOWN_INTERVAL_SECONDS: Final = 0.05


@dataclasses.dataclass(frozen=True)
class PortSnapshot:
    listening: bool
    established: frozenset[str]  # the remote "address:port" of each connection to the port


def parse_tcp_table(text: str, port: int) -> tuple[bool, set[str]]:
    """(is something listening on `port`, remote endpoints of established connections to it)."""
    listening, established = False, set()
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 4:
            continue
        local, remote, state = fields[1], fields[2], fields[3]
        if int(local.rpartition(":")[2], 16) != port:
            continue
        if state == STATE_LISTEN:
            listening = True
        elif state == STATE_ESTABLISHED:
            established.add(remote)
    return listening, established


def read_port_snapshot(port: int, tables: Iterable[str] = TCP_TABLES) -> PortSnapshot:
    listening, established = False, set()
    for table in tables:
        try:
            with open(table) as stream:
                table_listening, table_established = parse_tcp_table(stream.read(), port)
        except FileNotFoundError:  # no IPv6 in this kernel
            continue
        listening = listening or table_listening
        established |= table_established
    return PortSnapshot(listening, frozenset(established))


class ConnectionWatch(Part):
    """Samples the app port: readiness waits for its listener, late connections after t0 are
    tallied, and `on_drained` is called once the listener is gone and no established connection
    is left (only if a listener was ever seen: a wrong --app-port must not end the drain at once).
    The connections at t0, at the stop and at the drain end go into the report: those at the stop
    that predate t0 are pooled keep-alive connections that endpoint removal never moves."""

    drain_sources = frozenset({DrainEndSource.CONNECTIONS})

    def __init__(
        self,
        port: int,
        *,
        metrics: ShutdownMetrics,
        observations: Observations,
        on_drained: Callable[[], None],
        tables: Iterable[str] = TCP_TABLES,
    ) -> None:
        self.port = port
        self.tables = tuple(tables)
        self.metrics = metrics
        self.observations = observations
        self._on_drained = on_drained
        self._shutdown = asyncio.Event()
        self._t0: float | None = None
        self._at_t0: frozenset[str] = frozenset()
        self.last: PortSnapshot | None = None
        self.listener_seen = False
        self.counts = ConnectionCounts()
        observations.connections = self.counts  # the report reads them there
        metrics.app_connections_at_stop.set(0)

    def readiness(self) -> Mapping[str, ReadinessCheck]:
        # In both modes: an app container without a readiness probe of its own counts as ready
        # once it runs, and the pod would join the endpoints before the app listens (simulate
        # --chart showed a slow-starting app drop requests on every new pod).
        return {"app_port": self._listener_check}

    def _listener_check(self) -> str | None:
        if self.last is not None and self.last.listening:
            return None
        return f"nothing listening on port {self.port}"

    def on_phase_change(self, previous: Phase, current: Phase, timeline: Timeline) -> None:
        # Read at the transition itself (a small /proc read), not at the next sample: the stop is
        # the instant the app is told to stop, and what is still connected then is what it drops
        # unless it closes those connections itself.
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
        """Sample fast from now on; the connections now are the baseline for late connections."""
        self._t0 = t0
        self._at_t0 = self._sample().established
        self.counts.at_t0 = len(self._at_t0)
        self._shutdown.set()

    def _sample(self) -> PortSnapshot:
        snapshot = read_port_snapshot(self.port, self.tables)
        self.last = snapshot
        self.listener_seen = self.listener_seen or snapshot.listening
        self.metrics.app_connections.set(len(snapshot.established))
        return snapshot

    def _count_late(self, count: int, after_t0_seconds: float) -> None:
        self.observations.add_late_connections(count, after_t0_seconds)
        self.metrics.late_connections.inc(count)
        self.metrics.last_late_connection.set(after_t0_seconds)

    async def run(self) -> None:
        seen: frozenset[str] | None = None  # every connection seen since t0
        while True:
            snapshot = self._sample()
            if self._t0 is not None:
                seen = self._at_t0 if seen is None else seen
                late = snapshot.established - seen
                if late:
                    self._count_late(len(late), time.monotonic() - self._t0)
                seen |= snapshot.established
                if self.listener_seen and not snapshot.listening and not snapshot.established:
                    self._on_drained()
                    return
            if self._shutdown.is_set():
                await asyncio.sleep(SHUTDOWN_INTERVAL_SECONDS)
            else:  # idle: sample slowly, but wake at t0 at once
                await wait_for_any((self._shutdown,), time.monotonic() + IDLE_INTERVAL_SECONDS)
