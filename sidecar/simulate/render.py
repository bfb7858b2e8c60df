"""The rehearsal for a terminal: each deleted pod's termination drawn against its grace period,
the requests by phase and kind, each sidecar's report, and the verdict. Text from the result
document only, so what a person reads and what --json prints cannot disagree. ASCII only."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from sidecar.pages.words import summary_line
from sidecar.simulate.load import KINDS, PHASES

BAR_WIDTH: Final = 50
LEGEND: Final = (
    "= preStop hook: the app serves, its SIGTERM held   # the app drains after its SIGTERM",
    "+ the sidecar stops   . grace left   X SIGKILL   ^ the balancer stops routing to the pod",
)

Document = dict[str, Any]


def column(seconds: float, grace_seconds: float) -> int:
    """The column an instant falls in (0 to BAR_WIDTH - 1: past the grace period is the last)."""
    return max(0, min(BAR_WIDTH - 1, int(seconds / grace_seconds * BAR_WIDTH)))


def boundary(seconds: float, grace_seconds: float) -> int:
    """Where a segment ending at `seconds` stops (0 to BAR_WIDTH, exclusive)."""
    return max(0, min(BAR_WIDTH, int(seconds / grace_seconds * BAR_WIDTH)))


def timeline_bar(pod: Document) -> str:
    """One pod's termination on its grace period: the app's hook, its drain, then the sidecar.
    Every segment that happened gets at least one column, however short it was, even at the end
    of the bar; one that ran past the grace period fills the bar to its end."""
    grace = pod["grace_period_seconds"]
    app = pod["containers"][pod["app_container"]]
    segments = [
        (0.0, app["sigterm_after_seconds"], "="),
        (app["sigterm_after_seconds"], app["exited_after_seconds"], "#"),
    ]
    sidecar = pod["sidecar_container"]
    if sidecar is not None and sidecar != pod["app_container"]:
        segments.append((app["exited_after_seconds"], pod["containers"][sidecar]["exited_after_seconds"], "+"))
    drawn = [
        (start, end, mark) for start, end, mark in segments if start is not None and end is not None and end > start
    ]
    bar = ["."] * BAR_WIDTH
    cursor = 0
    for index, (start, end, mark) in enumerate(drawn):
        room_after = len(drawn) - index - 1  # columns kept for the segments still to come
        first = min(max(column(start, grace), cursor), BAR_WIDTH - 1 - room_after)
        last = min(max(first + 1, boundary(end, grace)), BAR_WIDTH - room_after)
        bar[first:last] = mark * (last - first)
        cursor = last
    for name in pod["sigkilled"]:
        bar[column(pod["containers"][name]["sigkill_after_seconds"], grace)] = "X"
    return "".join(bar)


def endpoint_marker(pod: Document) -> str:
    removed = pod["endpoint_removed_after_seconds"]
    if removed is None:
        return "(the balancer never stopped routing to it)"
    at = column(removed, pod["grace_period_seconds"])
    return " " * at + f"^ {removed:.2f}s"


def pod_lines(pod: Document) -> list[str]:
    name = f"{pod['name']:<8}"
    ended = pod["terminated_after_seconds"]
    grace = pod["grace_period_seconds"]
    summary = f"done {ended:.2f}s of {grace:g}s" if ended is not None else "did not end"
    if pod["sigkilled"]:
        summary += f", SIGKILLed: {', '.join(pod['sigkilled'])}"
    lines = [f"  {name}|{timeline_bar(pod)}| {summary}", f"  {' ' * 8} {endpoint_marker(pod)}"]
    app = pod["containers"][pod["app_container"]]
    hook = app["pre_stop_hook"]
    facts = []
    if hook is not None:
        facts.append(f"preStop {hook['result']} after {hook['returned_after_seconds']:.2f}s")
    drain = drain_fact(app)
    if drain is not None:
        facts.append(drain)
    facts.append(f"app exit status {app['exit_status']}")
    after = pod.get("requests_after_endpoint_removal")
    if after is not None and after["sent"]:
        facts.append(f"{after['sent']} requests after its endpoint removal ({after['failed']} failed)")
    lines.append(f"  {' ' * 8} {', '.join(facts)}")
    lines.append(f"  {' ' * 8} {report_line(pod)}")
    return lines


def drain_fact(app: Document) -> str | None:
    """What the app did after its stop signal: drained and exited, or was still running when the
    grace period ran out and the kubelet SIGKILLed it (its exit then is the kill, not a drain)."""
    signalled, exited, killed = app["sigterm_after_seconds"], app["exited_after_seconds"], app["sigkill_after_seconds"]
    signal_name = app.get("stop_signal") or "stop signal"
    if killed is not None:
        if signalled is None:
            return f"app never got its {signal_name}: SIGKILLed at {killed:.2f}s"
        return f"app still running {killed - signalled:.2f}s after its {signal_name}: SIGKILLed at {killed:.2f}s"
    if signalled is not None and exited is not None:
        return f"app drained {exited - signalled:.2f}s"
    return None


def report_line(pod: Document) -> str:
    """The sidecar's report in one line (sidecar.pages.words): seconds after t0, the drain's end
    and how it was seen, the hold, late connections split by whether the hold covered them."""
    if pod["sidecar_container"] is None:
        return "report: none (no sidecar)"
    report = pod["report"]
    if not isinstance(report, dict):
        return "report: none written"
    return "sidecar: " + summary_line(report)


def load_line(load: Document | None) -> list[str]:
    if load is None:
        return []
    if load["client"] == "fresh":
        how = "a new connection per request"
    else:
        how = f"{load['connections']} pooled keep-alive connections"
    return [
        f"load: {how}, {load['balancer']} balancer; {load['connections_opened']} connections opened, "
        f"{load['requests_on_reused_connections']} requests on reused ones"
    ]


def connections_line(requests: Document) -> list[str]:
    by_connection = requests.get("by_connection")
    if by_connection is None or not requests["failed"]:
        return []
    parts = []
    for on in ("new", "reused"):
        row = by_connection[on]
        kinds = ", ".join(f"{n} {kind}" for kind, n in row["by_kind"].items() if n)
        parts.append(f"{row['failed']} of {row['sent']} on {on} connections" + (f" ({kinds})" if kinds else ""))
    return ["  failed: " + "; ".join(parts)]


def lateness_line(lateness: Document | None) -> list[str]:
    """How late the rehearsal itself ran: its event loop, its kubelet and balancer, its load."""
    if lateness is None:
        return []
    loop, load, start = lateness["loop"], lateness["load"], lateness["process_start"]
    actions = ", ".join(f"{what} {late:.2f}s" for what, late in lateness["actions_max_late_seconds"].items())
    return [
        f"rehearsal lateness: event loop stalled {loop['stalled_seconds']:.2f}s "
        f"(longest {loop['max_lag_seconds']:.2f}s); "
        f"late actions: {actions or 'none'}; load up to {load['max_late_seconds']:.2f}s behind; "
        f"containers ready in up to {start['max_seconds_to_ready']:.2f}s"
    ]


def requests_table(requests: Document) -> list[str]:
    header = f"  {'phase':<13}{'sent':>7}{'failed':>8}" + "".join(f"{kind:>9}" for kind in KINDS)
    lines = [f"requests: {requests['sent']} sent, {requests['failed']} failed", header]
    for phase in PHASES:
        row = requests["by_phase"][phase]
        if phase == "no_endpoints" and not row["sent"]:
            continue
        kinds = "".join(f"{row['by_kind'][kind]:>9}" for kind in KINDS)
        lines.append(f"  {phase:<13}{row['sent']:>7}{row['failed']:>8}{kinds}")
    return lines


def verdict_lines(result: Document) -> list[str]:
    if result["verdict"] == "pass":
        lines = ["verdict: PASS - no request failed; every drain ended inside the grace period"]
        if result["mode"] != "none" and result["settings"]["chart"] is None:
            lines.append("  the same rollout without the sidecar: add --mode none")
        return lines
    if result["verdict"] == "inconclusive":
        return [
            "verdict: INCONCLUSIVE - this machine ran the rehearsal too late to judge the app (exit status 3):",
            *(f"  - {doubt}" for doubt in result["doubts"]),
            "  run it again on a quieter machine, or with fewer --pods",
        ]
    lines = ["verdict: FAIL"]
    lines += [f"  - {reason}" for reason in result["reasons"]]
    lines += [f"  - not counted, the rehearsal ran late: {doubt}" for doubt in result.get("doubts", [])]
    hint = advice(result)
    if hint:
        lines.append(f"  hint: {hint}")
    return lines


def advice(result: Document) -> str | None:
    settings = result["settings"]
    requests = result["requests"]
    if result["mode"] == "none" and requests["failed"]:
        return "this is the baseline without the sidecar; run without --mode none to compare"
    early = requests["by_phase"]["drain"]["failed"] + requests["by_phase"]["exited"]["failed"]
    load = result.get("load")
    stayed = sum(pod.get("requests_after_endpoint_removal", {}).get("failed", 0) for pod in result["pods"])
    if stayed and load is not None and load["balancer"] == "l4" and load["client"] == "pooled":
        return (
            "keep-alive connections stayed on the deleted pods after their endpoints were removed (kube-proxy "
            "moves only new connections): answer `Connection: close` from t0 (the sidecar's GET /events)"
        )
    delay, propagation = settings.get("prestop_delay_seconds"), settings["propagation_delay_seconds"]
    if early and delay is not None and delay <= propagation + settings["propagation_spread_seconds"]:
        return f"the prestop delay ({delay:g}s) does not cover the endpoint propagation ({propagation:g}s+)"
    if any(pod["sigkilled"] for pod in result["pods"]):
        return "the app drains for longer than the grace period leaves it: raise the grace period or drain faster"
    return None


def render(result: Document) -> str:
    pods: Sequence[Document] = result["pods"]
    lines = [f"mode {result['mode']}, {len(pods)} pods replaced in {result['duration_seconds']:.1f}s", ""]
    if pods:
        grace = pods[0]["grace_period_seconds"]
        lines.append(f"each deleted pod, from its deletion to the end of its {grace:g}s grace period:")
        lines += [f"  {legend}" for legend in LEGEND]
        for pod in pods:
            lines += pod_lines(pod)
        lines.append("")
    lines += load_line(result.get("load"))
    lines += requests_table(result["requests"])
    lines += connections_line(result["requests"])
    lines += lateness_line(result.get("lateness"))
    lines.append("")
    lines += verdict_lines(result)
    return "\n".join(lines) + "\n"
