"""Which local addresses listen on a port, read from /proc/net/tcp and /proc/net/tcp6 (by
sidecar.drain.port_reader, their one reader): how the kubelet tells a pod whose container listens
on 127.0.0.1 only (unreachable at its pod IP, as in a cluster) from one still starting. Reads;
decides nothing."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Iterable, Mapping
from typing import Final

from sidecar.drain.port_reader import STATE_LISTEN, TCP_TABLES, decode_table_endpoint, table_rows, table_texts
from sidecar.simulate.podspec import APP_PORT, HOST_PLACEHOLDER, HttpGet, PodTemplate

WILDCARDS: Final = frozenset({"0.0.0.0", "::"})
# A read of the tables is repeated no sooner than this many times its own duration after it.
READ_COST_FACTOR: Final = 10.0


def listening_table(tables: Iterable[str] = TCP_TABLES) -> dict[int, set[str]]:
    """Port -> every local address with a socket listening on it, from one read of each table."""
    found: dict[int, set[str]] = {}
    for text in table_texts(tables):
        for local, _remote, state in table_rows(text):
            if state == STATE_LISTEN:
                address, port = decode_table_endpoint(local)
                found.setdefault(port, set()).add(address)
    return found


def listening_addresses(port: int, tables: Iterable[str] = TCP_TABLES) -> set[str]:
    """Every local address with a socket listening on `port`."""
    return listening_table(tables).get(port, set())


class ListenerTable:
    """listening_table(), shared by every starting pod of a rehearsal: read in a thread (the tables
    list every socket of the machine, thousands of TIME_WAIT ones on a busy one, and a read took
    from 30 to 400 ms of kernel time here: on the loop it stalled the rehearsal) and at most once
    per `max_age_seconds`, or per READ_COST_FACTOR times the last read's duration when that is
    longer, so the check costs a machine at most a tenth of a core. While a read is under way
    the last table is answered: a listener check is not urgent."""

    def __init__(self, max_age_seconds: float) -> None:
        self._max_age_seconds = max_age_seconds
        self._next_read_at = -math.inf
        self._reading = False
        self._table: dict[int, set[str]] = {}

    async def current(self) -> dict[int, set[str]]:
        if self._reading or time.monotonic() < self._next_read_at:
            return self._table
        self._reading = True
        started = time.monotonic()
        try:
            self._table = await asyncio.to_thread(listening_table)
        finally:
            self._reading = False
            took = time.monotonic() - started
            self._next_read_at = started + max(self._max_age_seconds, READ_COST_FACTOR * took)
        return self._table


def unreachable_listeners(
    ports: Mapping[str, int], pod_address: str, table: Mapping[int, set[str]] | None = None
) -> dict[str, str]:
    """Port symbol -> the address it listens on, for each port listened on only at addresses
    that are neither the pod's nor a wildcard: nothing outside the pod's containers reaches it.
    `table`: listening_table()'s answer, read now when not given."""
    listening = listening_table() if table is None else table
    unreachable = {}
    for symbol, port in ports.items():
        addresses = listening.get(port, set())
        if addresses and not addresses & {pod_address, *WILDCARDS}:
            unreachable[symbol] = ", ".join(sorted(addresses))
    return unreachable


def unreachable_message(template: PodTemplate, symbol: str, listener: str, pod_address: str) -> str:
    """Who listens at `listener` instead of the pod's address, and what of the pod cannot reach it."""
    containers = template.all_containers
    owner = next((c.name for c in containers if (c.serves_traffic if symbol == APP_PORT else c.reports)), symbol)
    users = [f"{c.name} preStop hook GET {c.pre_stop.path}" for c in containers
             if isinstance(c.pre_stop, HttpGet) and c.pre_stop.port == symbol]  # fmt: skip
    for c in containers:
        users += [f"{c.name} {kind} probe" for kind, probe in (("startup", c.startup), ("readiness", c.readiness))
                  if probe is not None and probe.action.port == symbol]  # fmt: skip
    if symbol == APP_PORT:
        users.append("the balancer's traffic")
    return (
        f"{owner} listens on {listener} only, not on the pod's address {pod_address}: "
        f"{', '.join(users) or 'nothing'} cannot reach it, as in a cluster, where the kubelet and the Service "
        f"reach a pod at its IP (listen on {HOST_PLACEHOLDER} / $HOST or 0.0.0.0)"
    )
