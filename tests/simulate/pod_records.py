"""Hand-made kubelet records of deleted pods, for the verdict and render tests: every time is
given in seconds after the pod's deletion, as the documents report it."""

from __future__ import annotations

import json
from typing import Final

from sidecar.simulate.client import Failure, Result
from sidecar.simulate.load import Tally
from sidecar.simulate.records import ContainerRecord, PodRecord

DELETED_AT: Final = 100.0  # on the simulation clock; the documents count from here
CREATED_AT: Final = 40.0
GRACE: Final = 10.0
APP: Final = "app"
SIDECAR: Final = "shutdown-sidecar"
CLEAN_REPORT: Final = json.dumps(
    {"outcome": "clean", "drain_end_source": "app_exit", "margin_seconds": 5.25, "late_connections": 0}
)


def at(seconds: float | None) -> float | None:
    return None if seconds is None else DELETED_AT + seconds


def container(
    name: str,
    *,
    hook: tuple[float, float] | None = None,
    hook_result: str = "200",
    sigterm: float | None = None,
    exited: float | None = None,
    killed: float | None = None,
    exit_status: int | None = 0,
    message: str | None = None,
) -> ContainerRecord:
    return ContainerRecord(
        name,
        started_at=CREATED_AT,
        hook_started_at=None if hook is None else at(hook[0]),
        hook_ended_at=None if hook is None else at(hook[1]),
        hook_result=None if hook is None else hook_result,
        signalled_at=at(sigterm),
        killed_at=at(killed),
        exited_at=at(exited),
        exit_status=exit_status if exited is not None else None,
        termination_message=message,
    )


def pod(
    name: str,
    containers: list[ContainerRecord],
    *,
    traffic: str = APP,
    reporter: str | None = SIDECAR,
    endpoint_removed: float | None = 2.0,
    terminated: float | None = None,
    grace: float = GRACE,
) -> PodRecord:
    """`terminated` defaults to the last container's exit."""
    if terminated is None:
        exits = [c.exited_at for c in containers]
        terminated_at = None if None in exits else max(e for e in exits if e is not None)
    else:
        terminated_at = at(terminated)
    return PodRecord(
        name,
        app_port=18080,
        grace_period_seconds=grace,
        containers={c.name: c for c in containers},
        traffic_container=traffic,
        report_container=reporter,
        created_at=CREATED_AT,
        deleted_at=DELETED_AT,
        endpoint_removed_at=at(endpoint_removed),
        terminated_at=terminated_at,
    )


def native_pod(
    name: str = "pod-1",
    *,
    hook_end: float = 3.0,
    app_exit: float = 4.5,
    app_killed: float | None = None,
    sidecar_exit: float = 5.0,
    report: str | None = CLEAN_REPORT,
    endpoint_removed: float | None = 2.0,
    failed_after_removal: int = 0,
) -> PodRecord:
    """The app's preStop hook held until `hook_end`, then SIGTERM; the native sidecar stopped after it.
    `failed_after_removal`: of 3 more requests sent to it after its endpoint's removal, this many failed."""
    app = container(
        APP,
        hook=(0.0, hook_end),
        sigterm=hook_end,
        exited=app_exit,
        killed=app_killed,
        exit_status=137 if app_killed is not None else 0,
    )
    sidecar = container(SIDECAR, sigterm=app_exit, exited=sidecar_exit, message=report)
    record = pod(name, [sidecar, app], endpoint_removed=endpoint_removed)
    if failed_after_removal:
        record.requests_after_endpoint_removal = 3 + failed_after_removal
        record.failed_after_endpoint_removal = failed_after_removal
    return record


def run_pod(
    name: str = "pod-1", *, hook_end: float = 3.0, app_exit: float = 4.5, report: str | None = CLEAN_REPORT
) -> PodRecord:
    """Run mode: one container, the sidecar wrapping the app; it serves and it reports."""
    wrapper = container(APP, hook=(0.0, hook_end), sigterm=hook_end, exited=app_exit, message=report)
    return pod(name, [wrapper], reporter=APP)


def none_pod(
    name: str = "pod-1", *, app_exit: float = 1.5, killed: float | None = None, message: str | None = None
) -> PodRecord:
    """Mode none: the app alone, SIGTERMed at deletion; no hook, no report."""
    app = container(
        APP,
        sigterm=0.0,
        exited=app_exit,
        killed=killed,
        exit_status=137 if killed is not None else 0,
        message=message,
    )
    return pod(name, [app], reporter=None)


def tally(ok: int = 0, **failed_by_phase: list[Failure]) -> Tally:
    """`ok` answered requests while running, and the failures given per phase."""
    counted = Tally()
    for _ in range(ok):
        counted.add("running", Result(200, None))
    for phase, failures in failed_by_phase.items():
        for failure in failures:
            counted.add(phase, Result(503 if failure is Failure.SERVER_ERROR else None, failure))
    return counted
