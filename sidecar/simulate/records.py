"""What the simulated kubelet records of each pod and container: when each step of its start and
termination happened, on the simulation clock, and what it ended with. Data only: the kubelet
fills it in, the verdict and the load generator read it; nothing here acts or judges."""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable

from sidecar.simulate.podspec import PodTemplate

Clock = Callable[[], float]  # seconds since the simulation began: the time of every record


@dataclasses.dataclass(frozen=True)
class FailedRequest:
    """A request that failed: to which pod, in which phase, of which kind, sent when (and how far
    behind the load's schedule) and ended when, on the simulation clock."""

    pod: str
    phase: str
    kind: str
    sent_at: float
    ended_at: float
    sent_late_seconds: float
    reused: bool = False  # on a kept-alive connection (l4: its pod chosen when it opened)


class RequestPhase(enum.Enum):
    """Where the pod a request went to stood in its termination, as the kubelet saw it."""

    RUNNING = "running"  # not deleted
    PRESTOP = "prestop"  # deleted; the app's preStop hook is running and the app has no stop signal yet
    DRAIN = "drain"  # the app has its stop signal and has not exited
    EXITED = "exited"  # the app has exited; the balancer still routes to it


@dataclasses.dataclass
class ContainerRecord:
    name: str
    started_at: float | None = None
    hook_started_at: float | None = None
    hook_ended_at: float | None = None
    hook_result: str | None = None  # the status code, or the failure kind
    hook_failed: bool = False  # FailedPreStopHook: not retried, the stop signal follows at once
    signalled_at: float | None = None  # the stop signal's, whichever it was
    stop_signal: str | None = None
    killed_at: float | None = None
    kill_due_at: float | None = None  # when the kubelet meant to SIGKILL it (the grace left was over)
    spawn_seconds: float | None = None  # how long its process took to start (fork and exec)
    ready_at: float | None = None  # when it first passed its readiness probe (or started, without one)
    exited_at: float | None = None
    exit_status: int | None = None
    termination_message: str | None = None


@dataclasses.dataclass
class PodRecord:
    name: str
    app_port: int
    grace_period_seconds: float
    containers: dict[str, ContainerRecord]
    traffic_container: str
    report_container: str | None
    created_at: float
    address: str = "127.0.0.1"  # the pod's IP: where the balancer, the probes and the hooks reach it
    deleted_at: float | None = None
    endpoint_removed_at: float | None = None  # when the balancer stopped routing to it
    endpoint_removal_due_at: float | None = None  # when it should have: the propagation delay after
    terminated_at: float | None = None  # every container has exited: the pod and its IP are gone
    crashes: list[str] = dataclasses.field(default_factory=list)  # containers that exited undeleted
    # The pod's Ready condition as it changed before its deletion: (when, ready).
    readiness_changes: list[tuple[float, bool]] = dataclasses.field(default_factory=list)
    # Requests sent to the pod once the balancer had stopped routing to it (on connections that
    # stayed), and how many of them failed.
    requests_after_endpoint_removal: int = 0
    failed_after_endpoint_removal: int = 0
    # Its failed requests: when each left (simulation clock), the failure kind, the pod's phase then.
    failed_requests: list[tuple[float, str, str]] = dataclasses.field(default_factory=list)

    @classmethod
    def of_template(
        cls, name: str, template: PodTemplate, app_port: int, created_at: float, address: str = "127.0.0.1"
    ) -> PodRecord:
        """A new pod's record: a ContainerRecord for each container, none started."""
        return cls(
            name,
            app_port=app_port,
            grace_period_seconds=template.grace_period_seconds,
            containers={c.name: ContainerRecord(c.name) for c in template.all_containers},
            traffic_container=next(c.name for c in template.containers if c.serves_traffic),
            report_container=next((c.name for c in template.all_containers if c.reports), None),
            created_at=created_at,
            address=address,
        )

    def request_phase(self) -> RequestPhase:
        app = self.containers[self.traffic_container]
        if self.deleted_at is None:
            return RequestPhase.RUNNING
        if app.exited_at is not None:
            return RequestPhase.EXITED
        if app.signalled_at is None:
            return RequestPhase.PRESTOP
        return RequestPhase.DRAIN
