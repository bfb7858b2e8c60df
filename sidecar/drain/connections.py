"""connections: the app's listener and its established connections, read from /proc/net/tcp and
/proc/net/tcp6 (containers of a pod share one network namespace). There is no event for "the
last connection closed", so this samples: every IDLE_INTERVAL before t0 (for the gauge and run
mode's readiness), every SHUTDOWN_INTERVAL after. A connection that opens and closes between
two samples is not seen: late-connection counts are a lower bound."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Iterable
from typing import Final

from sidecar.shutdown import wait_for_any

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


class ConnectionWatch:
    """Samples the app port; counts late connections after t0; calls `on_drained` once the
    listener is gone and no established connection is left (only if a listener was ever seen:
    a wrong --app-port must not end the drain at once)."""

    def __init__(
        self,
        port: int,
        *,
        on_sample: Callable[[PortSnapshot], None],
        on_late: Callable[[int, float], None],
        on_drained: Callable[[], None],
        tables: Iterable[str] = TCP_TABLES,
    ) -> None:
        self.port = port
        self.tables = tuple(tables)
        self._on_sample = on_sample
        self._on_late = on_late
        self._on_drained = on_drained
        self._shutdown = asyncio.Event()
        self._t0: float | None = None
        self.last: PortSnapshot | None = None
        self.listener_seen = False

    def shutdown_began(self, t0: float) -> None:
        """Sample fast from now on; the next sample is the baseline for late connections."""
        self._t0 = t0
        self._shutdown.set()

    async def run(self) -> None:
        baseline: frozenset[str] | None = None
        while True:
            snapshot = read_port_snapshot(self.port, self.tables)
            self.last = snapshot
            self.listener_seen = self.listener_seen or snapshot.listening
            self._on_sample(snapshot)
            if self._t0 is not None:
                if baseline is not None:
                    late = snapshot.established - baseline
                    if late:
                        self._on_late(len(late), time.monotonic() - self._t0)
                baseline = snapshot.established if baseline is None else baseline | snapshot.established
                if self.listener_seen and not snapshot.listening and not snapshot.established:
                    self._on_drained()
                    return
            if self._shutdown.is_set():
                await asyncio.sleep(SHUTDOWN_INTERVAL_SECONDS)
            else:  # idle: sample slowly, but wake at t0 at once
                await wait_for_any((self._shutdown,), time.monotonic() + IDLE_INTERVAL_SECONDS)
