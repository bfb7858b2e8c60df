"""Whether the rehearsal's own lateness (sidecar.simulate.lateness) could have changed its outcome.
A failure is doubtful when the lateness around it was more than the slack it had: a request that
failed while the loop stalled, or after its pod's endpoint removal was due but not yet applied; a
SIGKILL that ran late; an overrun smaller than the stalls in its pod's termination. Lateness can
also flatter: a load behind its schedule can send a drain's requests only after it, and a stop
signal sent late lets the app serve on until its endpoint is removed. Pure functions of the records."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Final

from sidecar.simulate.client import Failure
from sidecar.simulate.lateness import NOTICEABLE_SECONDS, SIGKILL, Lateness
from sidecar.simulate.records import ContainerRecord, FailedRequest, PodRecord

# A readiness probe's attempt lasts at most its timeout (the kubelet's default 1 s): a stall in
# this long before a not-ready verdict could have made the probe time out.
PROBE_STALL_WINDOW_SECONDS: Final = 2.0
# A stop signal this late could hide a failure (below, the loop's jitter over a busy second).
FLATTERING_SECONDS: Final = 0.25


@dataclasses.dataclass(frozen=True)
class Doubt:
    """What lateness could have caused (or hidden) and the figure: `cause`, `seconds`."""

    cause: str
    seconds: float

    def __str__(self) -> str:
        return f"{self.cause} {self.seconds:.2f}s"


def request_doubt(
    failure: FailedRequest,
    lateness: Lateness,
    removals: dict[str, tuple[float, float]],
    *,
    per_request_balancing: bool,
) -> Doubt | None:
    """What could have failed this request rather than the app: it was sent late, the loop stalled
    while it was out, or the balancer still routed to its pod after the endpoint's removal was due
    (only for a connection the balancer chose then: an l4 client's reused connection stays put)."""
    if failure.sent_late_seconds >= NOTICEABLE_SECONDS:
        return Doubt("the load sent it late by", failure.sent_late_seconds)
    # Only a wait can be lengthened by a stall: a refusal or a reset comes as it comes.
    stalled = lateness.stalled_within(failure.sent_at, failure.ended_at)
    if failure.kind == Failure.TIMEOUT.value and stalled >= NOTICEABLE_SECONDS:
        return Doubt("the rehearsal's event loop stalled while it waited, for", stalled)
    removal = removals.get(failure.pod)
    chosen_now = per_request_balancing or not failure.reused
    if removal is not None and chosen_now:
        due, applied = removal
        if applied - due >= NOTICEABLE_SECONDS and due <= failure.sent_at <= applied:
            return Doubt(f"{failure.pod}'s endpoint removal reached the balancer late, by", applied - due)
    return None


def no_endpoints_doubt(
    failure: FailedRequest, pods: Iterable[PodRecord], lateness: Lateness, propagation_seconds: float
) -> Doubt | None:
    """A request refused because the balancer knew no pod: could a pod have left it only because
    its readiness probe failed during a stall (the probe's wait measured on a stalled loop)? Such
    a pod is out of the balancer from its not-ready verdict until the propagation delay after it
    was ready again."""
    for pod in pods:
        changes = pod.readiness_changes
        for index, (at, ready) in enumerate(changes):
            if ready:
                continue
            back = next((when for when, again in changes[index + 1 :] if again), math.inf)
            if not at <= failure.sent_at <= back + propagation_seconds:
                continue
            stalled = lateness.stalled_within(at - PROBE_STALL_WINDOW_SECONDS, at)
            if stalled >= NOTICEABLE_SECONDS:
                return Doubt(
                    f"{pod.name} left the balancer after a readiness probe failed while the rehearsal's event "
                    "loop stalled, for",
                    stalled,
                )
    return None


def stall_before_signal(container: ContainerRecord, lateness: Lateness) -> float:
    """How late the container's stop signal could have gone: the kubelet sends it as soon as it
    sees the hook return, and a stall the loop had just woken from could have hidden the return."""
    if container.hook_ended_at is None or container.signalled_at is None:
        return 0.0
    return lateness.stall_before(container.hook_ended_at) + (container.signalled_at - container.hook_ended_at)


def sigkill_doubt(pod: PodRecord, container: ContainerRecord, lateness: Lateness) -> Doubt | None:
    """A SIGKILL that ran late (the app may have exited before it was due, unseen), or a stop signal
    sent late (the app had that much less time)."""
    kill = lateness.late_action(pod.name, SIGKILL)
    if kill is not None:
        return Doubt("the kubelet's SIGKILL ran late, by", kill.late_seconds)
    lost = drain_time_lost(pod, container, lateness)
    if lost >= NOTICEABLE_SECONDS:
        return Doubt("the app's drain was cut short by the rehearsal's event loop stalling, by", lost)
    return None


def signal_lateness(pod: PodRecord, container: ContainerRecord) -> float:
    """How late the container's hook was sent, which delays its stop signal as much: the sidecar's
    hold starts when the hook arrives (a stall hiding the hook's return is stall_before_signal)."""
    sent_late = 0.0
    if pod.deleted_at is not None and container.hook_started_at is not None:
        sent_late = max(0.0, container.hook_started_at - pod.deleted_at)
    return sent_late


def drain_time_lost(pod: PodRecord, container: ContainerRecord, lateness: Lateness) -> float:
    """How much of its drain the container lost to the rehearsal's lateness. After a hook the
    SIGKILL is due the grace period less the hook's whole seconds after the signal, so a stall that
    lengthened the hook costs only the whole seconds it added; without a hook the SIGKILL is due at
    the grace period's end, and the signal's lateness is all lost."""
    late = stall_before_signal(container, lateness)
    start, end = container.hook_started_at, container.hook_ended_at
    if start is None or end is None:
        if pod.deleted_at is None or container.signalled_at is None:
            return 0.0
        return container.signalled_at - pod.deleted_at + lateness.stall_before(pod.deleted_at)
    measured = end - start
    return float(int(measured) - int(max(0.0, measured - late)))


def overrun_doubt(pod: PodRecord, lateness: Lateness) -> Doubt | None:
    """A termination past the grace period by less than the rehearsal's stalls in it: the exits
    may only have been seen late."""
    if pod.deleted_at is None or pod.terminated_at is None:
        return None
    overrun = pod.terminated_at - pod.deleted_at - pod.grace_period_seconds
    # The app's stop signal could have gone late, and the last exit could have been seen late.
    seen_late = lateness.stall_before(pod.terminated_at)
    kill = lateness.late_action(pod.name, SIGKILL)
    app = pod.containers[pod.traffic_container]
    signal_late = signal_lateness(pod, app) + stall_before_signal(app, lateness)
    late = signal_late + max(seen_late, 0.0 if kill is None else kill.late_seconds)
    if late >= max(overrun, NOTICEABLE_SECONDS):
        return Doubt(f"it overran by {overrun:.2f}s while the rehearsal ran late, by", late)
    return None


def hook_doubt(pod: PodRecord, container: ContainerRecord, lateness: Lateness) -> Doubt | None:
    """A hook that failed while the loop stalled (its wait measured on a stalled loop), or one
    sent late (the kubelet sends it at the deletion, bounded by the grace period: late, it had
    less of it)."""
    if container.hook_started_at is None or container.hook_ended_at is None:
        return None
    stalled = lateness.stalled_within(container.hook_started_at, container.hook_ended_at)
    if stalled >= NOTICEABLE_SECONDS:
        return Doubt("the rehearsal's event loop stalled during the hook, for", stalled)
    sent_late = None if pod.deleted_at is None else container.hook_started_at - pod.deleted_at
    if sent_late is not None and sent_late >= NOTICEABLE_SECONDS:
        return Doubt("the kubelet sent the hook late, by", sent_late)
    return None


def report_doubt(pod: PodRecord, lateness: Lateness) -> Doubt | None:
    """A sidecar's report that is not clean while the app's stop signal went late: the app had
    less of its drain than the sidecar counted on."""
    app = pod.containers[pod.traffic_container]
    late = signal_lateness(pod, app) + stall_before_signal(app, lateness)
    if late >= NOTICEABLE_SECONDS:
        return Doubt("the app's stop signal went late (the rehearsal's event loop stalled), by", late)
    return None


def flattering(pods: Iterable[PodRecord], lateness: Lateness) -> list[str]:
    """Lateness that could have hidden a failure, one line each with the worst figure: requests
    due while an app drained and its endpoint was still in the balancer that the load, behind its
    schedule, sent only after the app had exited (they never met the drain); an app's stop signal
    held back by a stall until after its endpoint removal reached the balancer (without the stall,
    it would have stopped serving first). A drain the balancer no longer routed to is not exposed
    to new requests, and lateness there hides nothing."""
    moved: dict[str, list[float]] = {}
    held: dict[str, float] = {}
    for pod in pods:
        app = pod.containers[pod.traffic_container]
        if pod.deleted_at is None or app.signalled_at is None:
            continue
        # Due while the app drained and the balancer could still send it new connections.
        removed = pod.endpoint_removed_at
        if app.exited_at is not None:
            exposed = app.exited_at if removed is None else min(app.exited_at, removed)
            if late := lateness.sends_moved_out(app.signalled_at, exposed, app.exited_at):
                moved[pod.name] = late
        signal_late = signal_lateness(pod, app) + stall_before_signal(app, lateness)
        if signal_late >= FLATTERING_SECONDS and (removed is None or removed > app.signalled_at - signal_late):
            held[pod.name] = signal_late
    found = []
    if moved:
        count = sum(len(late) for late in moved.values())
        worst = max(max(late) for late in moved.values())
        found.append(
            f"{count} requests due while the app drained in {_pods(moved)}, its endpoint still in the balancer, "
            f"were sent only after it had exited (the load ran up to {worst:.2f}s behind its schedule): "
            "they never met the drain"
        )
    if held:
        found.append(
            f"the app's stop signal went up to {max(held.values()):.2f}s late in {_pods(held)}, until after its "
            "endpoint removal reached the balancer (the rehearsal's event loop stalled): without the stall it "
            "would have stopped serving first"
        )
    return found


def _pods(late: Mapping[str, object]) -> str:
    names = list(late)
    return ", ".join(names) if len(names) <= 3 else f"{len(names)} pods ({', '.join(names[:3])}, ...)"


def split_request_failures(
    failures: Sequence[FailedRequest],
    pods: Sequence[PodRecord],
    lateness: Lateness,
    *,
    per_request_balancing: bool,
    propagation_seconds: float = 0.0,
) -> tuple[list[FailedRequest], list[tuple[FailedRequest, Doubt]]]:
    """(failures lateness cannot explain, failures it could have caused with the figure). `pods`:
    every pod of the rehearsal; `propagation_seconds`: the longest an endpoint change took to
    reach the balancer."""
    removals = {
        pod.name: (pod.endpoint_removal_due_at, pod.endpoint_removed_at)
        for pod in pods
        if pod.endpoint_removal_due_at is not None and pod.endpoint_removed_at is not None
    }
    real: list[FailedRequest] = []
    doubtful: list[tuple[FailedRequest, Doubt]] = []
    for failure in failures:
        doubt = request_doubt(failure, lateness, removals, per_request_balancing=per_request_balancing)
        if doubt is None and not failure.pod:
            doubt = no_endpoints_doubt(failure, pods, lateness, propagation_seconds)
        if doubt is None:
            real.append(failure)
        else:
            doubtful.append((failure, doubt))
    return real, doubtful


def worst_doubts(doubtful: Sequence[tuple[FailedRequest, Doubt]]) -> str:
    """The largest figure for each cause, largest first: "the load sent it late by 1.20s; ..."."""
    worst: dict[str, float] = {}
    for _, doubt in doubtful:
        worst[doubt.cause] = max(worst.get(doubt.cause, 0.0), doubt.seconds)
    ranked = sorted(worst.items(), key=lambda item: -item[1])
    return "; ".join(str(Doubt(cause, seconds)) for cause, seconds in ranked[:3])
