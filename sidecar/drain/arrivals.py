"""arrivals: new connections to the app port, counted from start-up on with their time, so the hold
can be decided from the traffic before t0 and the quiet after it. Counting is by identity: each
dump of the port's sockets (sidecar.drain.sockdiag) holds every connection in every state,
TIME_WAIT included, and a connection not in the previous dump is an arrival. It keeps only
counts and times; it reads nothing itself.

A connection the server closes first stays in TIME_WAIT for 60 s (TCP_TIMEWAIT_LEN,
include/net/tcp.h), and one that lives until the next dump is seen in its state: both are
counted by identity. A connection the client closes first can be gone from the server side
(LAST_ACK done, one round trip after the app's close) before the next dump. So, when no other
listener shares the namespace (a pod with the app's port and the sidecar's), every arrival is
counted from the namespace's TcpPassiveOpens (Documentation/networking/snmp_counter.rst): what
it counted beyond the sidecar's own accepts and the node's probes (UnseenArrivals), and the
dumps only tell the probes apart. With another listener (another port of the app, a mesh
proxy, `simulate`'s pods on one loopback) only the dumps count, such connections are missed,
and the report says so."""

from __future__ import annotations

import collections
import dataclasses
import itertools
from collections.abc import Callable, Collection, Mapping
from typing import Final

# How far back before t0 the rate and the quiet gaps are read: long enough for a few bursts of
# on/off traffic, short enough that the traffic of an hour ago does not decide today's hold.
LOOKBACK_SECONDS: Final = 120.0
# Batches kept: one per dump at most, so this bounds memory whatever the rate.
MAX_BATCHES: Final = 4096

Identity = tuple[str, int, str]  # remote address, remote port, local address


@dataclasses.dataclass(frozen=True)
class PreT0Traffic:
    """The arrivals seen in the lookback before t0: what the window rule needs."""

    arrivals: int
    span_seconds: float  # how long counting ran in the lookback (less when the sidecar just started)
    longest_gap_seconds: float | None  # the longest quiet stretch, the one ending at t0 included

    @property
    def rate_per_second(self) -> float | None:
        if self.arrivals == 0 or self.span_seconds <= 0:
            return None
        return self.arrivals / self.span_seconds


class ArrivalLog:
    """Arrivals as (monotonic time, count) batches, oldest first; bounded."""

    def __init__(self, started_at: float) -> None:
        self.started_at = started_at
        self.batches: collections.deque[tuple[float, int]] = collections.deque(maxlen=MAX_BATCHES)
        self.total = 0

    def add(self, at: float, count: int, merge_within_seconds: float = 0.0) -> None:
        """With `merge_within_seconds`, arrivals that close after the last batch join it, at their
        later time (so a hold is never shortened by it): a source that adds often (many workers
        each reporting) then keeps MAX_BATCHES from cutting the lookback short."""
        if count <= 0:
            return
        merged = self.batches.pop()[1] if self.batches and at - self.batches[-1][0] < merge_within_seconds else 0
        self.batches.append((at, merged + count))
        self.total += count

    def since(self, t0: float) -> tuple[int, float | None]:
        """(arrivals after t0, the time of the last one)."""
        after = [(at, count) for at, count in self.batches if at > t0]
        return sum(count for _, count in after), (after[-1][0] if after else None)

    def before(self, t0: float, lookback_seconds: float = LOOKBACK_SECONDS) -> PreT0Traffic:
        start = max(self.started_at, t0 - lookback_seconds)
        times = [at for at, _ in self.batches if start <= at <= t0]
        count = sum(count for at, count in self.batches if start <= at <= t0)
        if not times:
            return PreT0Traffic(0, t0 - start, None)
        edges = [*times, t0]
        gaps = [later - earlier for earlier, later in itertools.pairwise(edges)]
        return PreT0Traffic(count, t0 - start, max(gaps) if gaps else 0.0)


class IdentityDiff:
    """Turns successive dumps into arrivals: identities not in the previous dump, except those
    from ignored sources (the node's probes). A dump that failed counts nothing and forgets
    nothing."""

    def __init__(self, ignored_sources: Collection[str] = ()) -> None:
        self.ignored_sources = frozenset(ignored_sources)
        self._previous: frozenset[Identity] | None = None
        self.ignored = 0  # probe connections seen, for the report's evidence
        self.seen = 0  # every identity seen arriving, probes included

    def arrivals(self, connections: Mapping[Identity, int]) -> int:
        current = frozenset(connections)
        previous = self._previous
        self._previous = current
        if previous is None:  # the first dump is the baseline: what was already there
            return 0
        new = current - previous
        probes = sum(1 for remote, _, _ in new if remote in self.ignored_sources)
        self.ignored += probes
        self.seen += len(new)
        return len(new) - probes


@dataclasses.dataclass
class OwnListener:
    """The sidecar's admin port and how many connections it accepted: its share of the network
    namespace's TcpPassiveOpens. The port is known once the admin socket is bound."""

    port: int | None = None
    accepted: Callable[[], int] = lambda: 0


class UnseenArrivals:
    """Arrivals from the namespace's TcpPassiveOpens: the passive opens since the baseline, minus
    the sidecar's own accepts and the node's probes the dumps saw. The counter is read one tick
    behind the accepts: the kernel counts a connection when its handshake completes, the sidecar
    when its event loop accepts it, and this tick runs on that loop, so anything counted a tick
    ago has been accepted. Only increases of the running maximum are arrivals: a probe a dump saw
    before the counter did makes the residual dip, never count twice."""

    def __init__(self) -> None:
        self._start: tuple[int, int, int] | None = None  # passive opens, own accepts, probes seen
        self._previous = 0
        self._counted = 0

    def update(self, passive_opens: int, own_accepted: int, seen: int) -> int:
        """New arrivals; `seen`: passive opens that are not arrivals (the node's probes the dumps
        saw), a running total; only those since the baseline (the first call since a reset) count."""
        if self._start is None:
            self._start = (passive_opens, own_accepted, seen)
            self._previous = passive_opens
            return 0
        lagged, self._previous = self._previous, passive_opens
        start_opens, start_accepted, start_seen = self._start
        residual = (lagged - start_opens) - (own_accepted - start_accepted) - (seen - start_seen)
        if residual <= self._counted:
            return 0
        new, self._counted = residual - self._counted, residual
        return new

    def reset(self) -> None:
        """Forget the baseline (another listener came or went: the residual is not ours)."""
        self._start = None
        self._counted = 0
