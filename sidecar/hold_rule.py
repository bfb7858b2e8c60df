"""The auto hold's rule, as pure functions: from the arrivals before t0, how long a quiet stretch
after t0 must last before the pod is taken to be out of every endpoint list, and when the hold
therefore ends. No clock, no I/O: sidecar.hold applies it to live counts."""

from __future__ import annotations

import dataclasses
import math
from typing import Final

from sidecar.drain.arrivals import LOOKBACK_SECONDS, PreT0Traffic

# Which stream before t0 sets the quiet window (--prestop-evidence). The pod's routing decisions
# are what must have stopped: behind kube-proxy (a Service's ClusterIP) they are new connections,
# and a pooled client's requests on an old connection say nothing about them; behind a proxy that
# picks a pod per request (an ingress controller, a mesh routing to pod IPs) every request is one.
CONNECTIONS: Final = "connections"
REQUESTS: Final = "requests"
EVIDENCE_MODES: Final = (CONNECTIONS, REQUESTS)


@dataclasses.dataclass(frozen=True)
class HoldRule:
    minimum_seconds: float
    maximum_seconds: float
    confidence: float  # 1 - epsilon: the chance a still-routed pod would have seen an arrival
    evidence: str = CONNECTIONS  # EVIDENCE_MODES: the stream the window is measured on

    @property
    def epsilon(self) -> float:
        return 1.0 - self.confidence

    def problem(self) -> str | None:
        """Why these bounds cannot work, or None (the grace budget is checked by Budget)."""
        if self.minimum_seconds > self.maximum_seconds:
            return (
                f"the shortest hold ({self.minimum_seconds:g}s) must not exceed the longest "
                f"(--prestop-delay-max {self.maximum_seconds:g}s)"
            )
        if not 0 < self.confidence < 1:
            return f"the quiet confidence must be strictly between 0 and 1, got {self.confidence:g}"
        return None


# Defaults, and why:
# - minimum 1 s: kube-proxy applies endpoint changes at most once per --iptables-min-sync-period
#   (1 s by default; https://kubernetes.io/docs/reference/command-line-tools-reference/kube-proxy/),
#   so a busy pod can look quiet for up to a second while a node has yet to sync.
# - maximum 15 s: three times the former fixed default of 5 s, above the several seconds EndpointSlice
#   propagation takes on busy clusters (issue #22's worst case: 6 s with spread), and with the
#   default report reserve (1 s) it leaves 14 s of the default 30 s grace period to drain.
# - confidence 0.999 (epsilon 0.001): the window is ln(1000) = 6.9 mean gaps between arrivals,
#   0.14 s at 50/s (the minimum then decides), 3.5 s at 2/s.
DEFAULT_HOLD_RULE: Final = HoldRule(minimum_seconds=1.0, maximum_seconds=15.0, confidence=0.999)


def quiet_window(traffic: PreT0Traffic, rule: HoldRule) -> float | None:
    """The quiet stretch that ends the hold: ln(1/epsilon)/rate, so a pod still routed to at the
    pre-t0 rate would have seen an arrival in it with probability 1 - epsilon; at least the
    longest quiet gap seen before t0 (traffic is bursty: a lull that was normal then is not
    convergence now); within the rule's bounds. None when nothing arrived before t0: there is no
    rate to judge quiet by, and the hold lasts its maximum. None too when counting ran for less
    than the maximum before t0 (less than the whole lookback when the maximum is longer): too
    little history to judge quiet by. The gap check cannot see a gap longer than the span counted,
    which is the very range it must cover, and the rate rests on a few arrivals, often a burst (the
    clients' first connections, a proxy filling its pool to a new endpoint). Young pods are the
    ones deleted: a ReplicaSet scaling down deletes its most recently created and ready pods first
    (https://kubernetes.io/docs/concepts/workloads/controllers/replicaset/#scaling-a-replicaset).
    The rehearsal grid's pods 1-3 s old dropped requests at 6 s propagation where old ones did
    not. Like a failure, too little history never makes the hold shorter."""
    rate = traffic.rate_per_second
    if rate is None or too_little_history(traffic, rule):
        return None
    window = max(math.log(1.0 / rule.epsilon) / rate, traffic.longest_gap_seconds or 0.0)
    return min(max(window, rule.minimum_seconds), rule.maximum_seconds)


def too_little_history(traffic: PreT0Traffic, rule: HoldRule) -> bool:
    """Counting before t0 ran for less than the hold's maximum (or the whole lookback, when the
    maximum is longer): quiet_window says why the hold then lasts its maximum."""
    return traffic.span_seconds < min(rule.maximum_seconds, LOOKBACK_SECONDS)


def too_little_history_reason(counted: str) -> str:
    """Why a hold with too_little_history lasted its maximum, in the log and the report's words;
    `counted`: how long counting ran before t0, as the caller writes seconds."""
    return f"counted only {counted} before t0, less than the maximum: too little history to judge quiet"


def release_at(t0: float, window: float | None, last_arrival: float | None, rule: HoldRule) -> float:
    """When the hold ends: `window` after t0 or after the last arrival since t0, whichever is
    later, and never past t0 + the maximum (None window: at the maximum)."""
    latest = t0 + rule.maximum_seconds
    if window is None:
        return latest
    quiet_since = t0 if last_arrival is None else max(t0, last_arrival)
    return min(quiet_since + window, latest)


def choose_evidence(mode: str, connections: PreT0Traffic, requests: PreT0Traffic | None) -> tuple[str, PreT0Traffic]:
    """Which stream before t0 sets the window. `connections` mode: the new connections, always
    (requests after t0 still restart the quiet clock, sidecar.hold: more evidence never shortens
    a hold). `requests` mode: the requests the app reported it started when it reported any in
    the lookback (pooled keep-alive clients behind an l7 proxy send many requests, each a routing
    decision, over few new connections), else the new connections. Never both summed: a fresh
    connection and its first request are one arrival, and the rate would be doubled."""
    if mode == REQUESTS and requests is not None and requests.arrivals > 0:
        return REQUESTS, requests
    return CONNECTIONS, connections
