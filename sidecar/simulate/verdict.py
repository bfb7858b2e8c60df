"""What a rehearsal found, as one JSON-ready document, and the verdict on it: pass only when no
request failed and every deleted pod's containers exited inside the grace period, without a
SIGKILL, and each sidecar reported a clean drain; inconclusive when the rehearsal's own lateness
could have caused a failure or hidden one (sidecar.simulate.judgement). Pure functions of the records."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sidecar.simulate.judgement import (
    Doubt,
    flattering,
    hook_doubt,
    overrun_doubt,
    report_doubt,
    sigkill_doubt,
    split_request_failures,
    worst_doubts,
)
from sidecar.simulate.lateness import Lateness
from sidecar.simulate.load import Tally
from sidecar.simulate.podspec import Mode
from sidecar.simulate.records import ContainerRecord, PodRecord

Document = dict[str, Any]


def _after(at: float | None, origin: float) -> float | None:
    return None if at is None else round(at - origin, 3)


def container_document(record: ContainerRecord, deleted_at: float) -> Document:
    """A container's termination, in seconds after its pod's deletion."""
    hook = None
    if record.hook_started_at is not None:
        hook = {
            "result": record.hook_result,
            "failed": record.hook_failed,
            "returned_after_seconds": _after(record.hook_ended_at, deleted_at),
        }
    signalled = _after(record.signalled_at, deleted_at)
    return {
        "pre_stop_hook": hook,
        "stop_signal": record.stop_signal,
        "stop_signal_after_seconds": signalled,
        "sigterm_after_seconds": signalled,  # the stop signal's time, whichever it was (its former name)
        "exited_after_seconds": _after(record.exited_at, deleted_at),
        "exit_status": record.exit_status,
        "sigkill_after_seconds": _after(record.killed_at, deleted_at),
    }


def parse_report(message: str | None) -> Document | str | None:
    """The sidecar's final report from its termination log: a JSON object, else the raw text."""
    if message is None:
        return None
    try:
        report = json.loads(message)
    except ValueError:
        return message
    return report if isinstance(report, dict) else message


def pod_document(record: PodRecord) -> Document:
    deleted_at = record.deleted_at if record.deleted_at is not None else record.created_at
    containers = {name: container_document(c, deleted_at) for name, c in record.containers.items()}
    killed = sorted(name for name, c in record.containers.items() if c.killed_at is not None)
    terminated_after = _after(record.terminated_at, deleted_at)
    report = None
    if record.report_container is not None:
        report = parse_report(record.containers[record.report_container].termination_message)
    return {
        "name": record.name,
        "deleted_after_seconds": None if record.deleted_at is None else round(record.deleted_at, 3),
        "grace_period_seconds": record.grace_period_seconds,
        "endpoint_removed_after_seconds": _after(record.endpoint_removed_at, deleted_at),
        "requests_after_endpoint_removal": {
            "sent": record.requests_after_endpoint_removal,
            "failed": record.failed_after_endpoint_removal,
        },
        "terminated_after_seconds": terminated_after,
        "within_grace": not killed and terminated_after is not None and terminated_after <= record.grace_period_seconds,
        "sigkilled": killed,
        "app_container": record.traffic_container,
        "sidecar_container": record.report_container,
        "containers": containers,
        "report": report,
        # Each failed request: seconds after the deletion it left (negative: before), kind, phase.
        "failed_requests": [[_after(at, deleted_at), kind, phase] for at, kind, phase in record.failed_requests],
    }


def request_reason(requests: Document) -> str | None:
    if not requests["failed"]:
        return None
    kinds = ", ".join(f"{n} {kind}" for kind, n in requests["by_kind"].items() if n)
    reused = requests["by_connection"]["reused"]["failed"]
    on_reused = f"; {reused} on reused connections" if reused else ""
    return f"{requests['failed']} of {requests['sent']} requests failed ({kinds}{on_reused})"


def pod_failures(pod: Document) -> list[tuple[str, str]]:
    """(reason, what failed: "hook", "sigkill", "grace", "report" or "no_report") for one deleted pod."""
    failures = []
    grace = pod["grace_period_seconds"]
    for name, container in pod["containers"].items():
        hook = container["pre_stop_hook"]
        if hook is not None and hook["failed"]:
            reason = (
                f"{pod['name']}: {name} preStop hook failed ({hook['result']}): the kubelet logs "
                "FailedPreStopHook, never retries it, and sends the stop signal at once"
            )
            failures.append((reason, f"hook:{name}"))
    for name in pod["sigkilled"]:
        at = pod["containers"][name]["sigkill_after_seconds"]
        reason = (
            f"{pod['name']}: {name} was SIGKILLed {at:.2f}s after deletion: "
            f"its drain overran the {grace:g}s grace period"
        )
        failures.append((reason, f"sigkill:{name}"))
    if not pod["sigkilled"] and not pod["within_grace"]:
        failures.append((f"{pod['name']}: did not terminate inside the {grace:g}s grace period", "grace"))
    if pod["sidecar_container"] is None:
        return failures
    report = pod["report"]
    if not isinstance(report, dict):
        failures.append((f"{pod['name']}: no final report from {pod['sidecar_container']}", "no_report"))
    elif report.get("outcome") != "clean":
        failures.append((f"{pod['name']}: the sidecar's report says outcome {report.get('outcome')!r}", "report"))
    return failures


def reasons_to_fail(requests: Document, pods: Sequence[Document]) -> list[str]:
    reasons = []
    if requests["sent"] == 0:
        reasons.append("no request was sent")
    failed = request_reason(requests)
    if failed is not None:
        reasons.append(failed)
    for pod in pods:
        reasons += [reason for reason, _ in pod_failures(pod)]
    return reasons


def pod_doubt(record: PodRecord, what: str, lateness: Lateness) -> Doubt | None:
    """The lateness that could have caused one of pod_failures(), if any."""
    kind, _, container = what.partition(":")
    if kind == "hook":
        return hook_doubt(record, record.containers[container], lateness)
    if kind == "sigkill":
        return sigkill_doubt(record, record.containers[container], lateness)
    if kind == "grace":
        return overrun_doubt(record, lateness)
    if kind == "report":
        return report_doubt(record, lateness)
    return None


def judge(
    requests: Document,
    pods: Sequence[Document],
    tally: Tally,
    deleted: Sequence[PodRecord],
    lateness: Lateness,
    *,
    per_request_balancing: bool,
    every_pod: Sequence[PodRecord] = (),
    propagation_seconds: float = 0.0,
) -> tuple[list[str], list[str]]:
    """(reasons to fail that the rehearsal's lateness cannot explain, doubts: failures it could
    have caused, with the figure, and lateness that could have hidden one). `every_pod`: the
    records of the pods not deleted too (their readiness decides where requests could go)."""
    fails: list[str] = ["no request was sent"] if requests["sent"] == 0 else []
    doubts: list[str] = []
    failed = request_reason(requests)
    if failed is not None:
        _, doubtful = split_request_failures(
            tally.failures,
            [*deleted, *(record for record in every_pod if record not in deleted)],
            lateness,
            per_request_balancing=per_request_balancing,
            propagation_seconds=propagation_seconds,
        )
        unexplained = requests["failed"] - len(doubtful)
        if not doubtful:
            fails.append(failed)
        elif unexplained:
            fails.append(f"{failed}; {len(doubtful)} of them while the rehearsal ran late ({worst_doubts(doubtful)})")
        else:
            doubts.append(f"{failed}, each while the rehearsal ran late: {worst_doubts(doubtful)}")
    records = {record.name: record for record in deleted}
    for pod in pods:
        for reason, what in pod_failures(pod):
            doubt = pod_doubt(records[pod["name"]], what, lateness)
            if doubt is None:
                fails.append(reason)
            else:
                doubts.append(f"{reason}; but {doubt}")
    return fails, [*doubts, *flattering(deleted, lateness)]


def result_document(
    mode: Mode,
    settings: Document,
    tally: Tally,
    deleted: Sequence[PodRecord],
    duration_seconds: float,
    *,
    crashes: Sequence[str] = (),
    load: Document | None = None,
    lateness: Lateness | None = None,
    every_pod: Sequence[PodRecord] = (),
) -> Document:
    """simulate's --json object: verdict, reasons, requests, pods, and the settings and load it
    ran with. `crashes`: containers of any pod, old or new, that exited while their pod was not
    deleted. `load`: how the requests were sent (sidecar.simulate.load.load_document). `lateness`:
    how late the rehearsal itself ran; a failure it could have caused makes the verdict
    inconclusive rather than fail, and so does lateness that could have hidden one. `every_pod`:
    every pod's record, the new ones too."""
    requests = tally.document()
    pods = [pod_document(record) for record in deleted]
    seen = lateness if lateness is not None else Lateness()
    l7 = load is not None and load.get("balancer") == "l7"
    propagation = settings.get("propagation_delay_seconds", 0.0) + settings.get("propagation_spread_seconds", 0.0)
    fails, doubts = judge(
        requests,
        pods,
        tally,
        deleted,
        seen,
        per_request_balancing=l7,
        every_pod=every_pod,
        propagation_seconds=propagation,
    )
    fails += crashes
    verdict = "fail" if fails else "inconclusive" if doubts else "pass"
    return {
        "verdict": verdict,
        "reasons": fails if fails else doubts,
        "mode": mode.value,
        "settings": settings,
        "duration_seconds": round(duration_seconds, 3),
        "load": load,
        "requests": requests,
        "pods": pods,
        # Failures the rehearsal's own lateness could have caused, and lateness that could have
        # hidden one (the reasons of an inconclusive verdict), with the lateness it measured.
        "doubts": doubts,
        "lateness": seen.document(),
    }
