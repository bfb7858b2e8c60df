"""The HTML pages: a rehearsal (`simulate --html`) and real pods' reports (`report --html`). One
self-contained document each: inline CSS and SVG, no script, nothing fetched. The verdict comes
first, in words and a glyph as well as a colour; past SUMMARY_FROM pods, counts and a margins
histogram come before the lanes, and the lanes of clean pods fold away."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Any, Final

from sidecar.pages import svg
from sidecar.pages.documents import Reports
from sidecar.pages.lanes import Lane, report_lane, simulated_lane

Document = Mapping[str, Any]

SUMMARY_FROM: Final = 30  # pods: past this, a summary above the lanes and clean lanes folded
VERDICT_GLYPH: Final = {"pass": "\u2714", "fail": "\u2718"}

CSS: Final = """
:root{font:15px/1.45 "DejaVu Sans","Liberation Sans",Arial,sans-serif;color:#111;background:#fff}
body{margin:0 auto;max-width:1200px;padding:12px}
h1{font-size:1.5em;margin:.2em 0;padding:.4em .6em;border-left:10px solid #888;background:#f3f3f3}
h1.pass{border-color:#009E73}h1.fail{border-color:#D55E00;background:#fbe9e0}
h1.inconclusive{border-color:#F0E442;background:#fbf8d8}
h2{font-size:1.1em;margin:1.2em 0 .3em}
.reasons li{margin:.15em 0}.where{font-weight:bold}
.facts{color:#333;font-size:.92em}
.lane{border-top:1px solid #ddd;padding:4px 0}
.lane .name{font-weight:bold}.lane .status{padding:0 .4em;border-radius:3px;margin-left:.4em;font-size:.9em}
.lane .status.ok{background:#d9f2ea}.lane .status.bad{background:#D55E00;color:#fff}
.lane .line{font-size:.88em;color:#333}.lane .note{font-size:.85em;color:#666;margin-left:.4em}
svg.bar{margin-top:5px}svg text{font-size:11px;fill:#222}
svg text.in{fill:#000;font-weight:bold}svg text.mark{font-size:13px;font-weight:bold}
.legend{font-size:.88em;display:flex;flex-wrap:wrap;gap:.3em 1.2em;margin:.4em 0}
.sw{display:inline-block;width:1.3em;height:.9em;vertical-align:middle;margin-right:.3em;border:1px solid #888}
table{border-collapse:collapse;font-size:.9em}td,th{padding:2px 8px;text-align:right;border-bottom:1px solid #ddd}
td:first-child,th:first-child{text-align:left}.scroll{overflow-x:auto}
details>summary{cursor:pointer;margin:.5em 0}
"""


def document(heading: str, body: Sequence[str]) -> str:
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(heading)}</title><style>{CSS}</style></head><body>{svg.DEFS}"
        + "".join(body)
        + "</body></html>\n"
    )


def verdict_heading(verdict: str, words: str) -> str:
    glyph = VERDICT_GLYPH.get(verdict, "?")
    return f'<h1 id="verdict" class="{escape(verdict)}">{glyph} {escape(verdict.upper())}: {escape(words)}</h1>'


def swatch(fill: str) -> str:
    return f'<svg class="sw" width="20" height="14"><rect width="20" height="14" fill="{fill}"/></svg>'


def lanes_legend(simulated: bool) -> str:
    items = [
        f"{swatch(svg.SKY)}hold: the app serves, its stop signal held",
        f"{swatch('url(#p-drain)')}drain: after the app's stop signal",
        f"{swatch('url(#p-sidecar)')}sidecar: its report, after the app",
        f"{swatch('#F4F4F4')}grace period; dashed line: SIGKILL due",
        "<b>|</b> the app's stop signal",
        '<b style="color:#CC79A7">\u25cf</b> last late connection',
        '<b style="color:#D55E00">\u2715</b> SIGKILL',
        '<b style="color:#D55E00">\u26a0 N pinned</b> keep-alive connections from before t0 open at the stop',
    ]
    if simulated:
        items.insert(5, '<b style="color:#0072B2">\u25bc</b> the balancer stops routing to the pod')
        items.append(f"{swatch(svg.VERMILLION)}ticks under a bar: failed requests")
    return '<div class="legend">' + "".join(f"<span>{item}</span>" for item in items) + "</div>"


def lane_html(lane: Lane, span: float) -> str:
    status = "bad" if lane.problem else "ok"
    glyph = "\u2718" if lane.problem else "\u2714"
    note = f'<span class="note">{escape(lane.note)}</span>' if lane.note else ""
    return (
        f'<div class="lane" data-pod="{escape(lane.name)}"><span class="name">{escape(lane.name)}</span>'
        f'<span class="status {status}">{glyph} {escape(lane.status)}</span>{note}'
        f'<div class="line">{escape(lane.line)}</div>{svg.lane_svg(lane, span)}</div>'
    )


def lanes_section(lanes: Sequence[Lane], heading: str, *, simulated: bool) -> list[str]:
    """The lanes on one axis: problems first; past SUMMARY_FROM pods the clean ones fold away."""
    if not lanes:
        return []
    span = max(lane.end_seconds for lane in lanes) * 1.02
    out = [f"<h2>{escape(heading)}</h2>", lanes_legend(simulated), svg.axis(span, "seconds after t0")]
    if len(lanes) > SUMMARY_FROM:
        shown, folded = [lane for lane in lanes if lane.problem], [lane for lane in lanes if not lane.problem]
    else:
        shown, folded = list(lanes), []
    out += [lane_html(lane, span) for lane in shown]
    if folded:
        out.append(f"<details><summary>{len(folded)} clean pods</summary>")
        out += [lane_html(lane, span) for lane in folded]
        out.append("</details>")
    return out


def summary_section(lanes: Sequence[Lane]) -> list[str]:
    """Counts by outcome and the margins as a histogram: what a person reads of 5,000 pods."""
    counts: dict[str, int] = {}
    for lane in lanes:
        counts[lane.status] = counts.get(lane.status, 0) + 1
    rows = "".join(
        f"<tr><td>{escape(status)}</td><td>{n}</td></tr>" for status, n in sorted(counts.items(), key=lambda i: -i[1])
    )
    margins = [lane.margin_seconds for lane in lanes if lane.margin_seconds is not None]
    out = ["<h2>Summary</h2>", f"<table><tr><th>outcome</th><th>pods</th></tr>{rows}</table>"]
    if margins:
        out.append(
            f"<h2>Margins: seconds left before SIGKILL when the drain ended ({len(margins)} pods, "
            f"lowest {min(margins):.1f} s)</h2>"
        )
        out.append(svg.histogram(margins, "pods by margin"))
    return out


def reports_page(reports: Reports) -> str:
    lanes = [report_lane(pod.name, pod.report) for pod in reports.pods]
    problems = [lane for lane in lanes if lane.problem]
    if problems:
        names = ", ".join(lane.name for lane in problems[:5]) + (" and more" if len(problems) > 5 else "")
        heading = verdict_heading("fail", f"{len(problems)} of {len(lanes)} pods did not drain cleanly: {names}")
    elif lanes:
        heading = verdict_heading("pass", f"all {len(lanes)} pods drained cleanly inside their grace period")
    else:
        heading = verdict_heading("none", "no pod has a final report yet")
    body = [heading, f'<p class="facts">read from {escape(reports.shape)}']
    if reports.without_report:
        names = ", ".join(reports.without_report[:10]) + (" ..." if len(reports.without_report) > 10 else "")
        body.append(
            f"; {plural(len(reports.without_report), 'pod')} without a report (not terminated yet?): {escape(names)}"
        )
    body.append("</p>")
    if len(lanes) > SUMMARY_FROM:
        body += summary_section(lanes)
    body += lanes_section(lanes, "Each pod's shutdown, in seconds after its t0", simulated=False)
    return document("shutdown reports", body)


# A request's phase (sidecar.simulate.records.RequestPhase) as the words of a sentence.
IN_PHASE: Final = {
    "running": "before its deletion",
    "prestop": "during its hold",
    "drain": "while the app drained",
    "exited": "after the app exited",
}


def where_failed(pods: Sequence[Document]) -> list[str]:
    """Which pod dropped requests in which phase: the answer a person looks for first."""
    lines = []
    for pod in pods:
        counts: dict[tuple[str, str], int] = {}
        for row in pod.get("failed_requests") or []:
            key = (str(row[2]) if len(row) > 2 else "?", str(row[1]))
            counts[key] = counts.get(key, 0) + 1
        if counts:
            what = ", ".join(f"{n} {kind} {IN_PHASE.get(phase, phase)}" for (phase, kind), n in counts.items())
            lines.append(f"{pod['name']} dropped {plural(sum(counts.values()), 'request')}: {what}")
    return lines


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def phase_table(requests: Document) -> str:
    kinds = list(requests.get("by_kind", {}))
    head = "".join(f"<th>{escape(kind)}</th>" for kind in kinds)
    rows = []
    for phase, row in requests.get("by_phase", {}).items():
        cells = "".join(f"<td>{row['by_kind'].get(kind, 0)}</td>" for kind in kinds)
        rows.append(f"<tr><td>{escape(phase)}</td><td>{row['sent']}</td><td>{row['failed']}</td>{cells}</tr>")
    return (
        f'<div class="scroll"><table id="phases"><tr><th>phase</th><th>sent</th><th>failed</th>{head}</tr>'
        + "".join(rows)
        + "</table></div>"
    )


def requests_section(result: Document) -> list[str]:
    over_time = result["requests"].get("over_time")
    if not isinstance(over_time, dict):
        return []
    bin_seconds, span = over_time["bin_seconds"], max(result["duration_seconds"], 0.1)
    deletions = [
        (pod["deleted_after_seconds"], str(pod["name"])) for pod in result["pods"] if pod.get("deleted_after_seconds")
    ]
    legend = "".join(f"<span>{swatch(fill)}{escape(kind)}</span>" for kind, fill in svg.OUTCOME_FILL.items())
    out = ["<h2>Requests over the rehearsal, by outcome</h2>", f'<div class="legend">{legend}</div>']
    out.append(svg.axis(span, "seconds into the rehearsal"))
    for on in ("new", "reused"):
        series = over_time.get(on, {})
        sent = sum(sum(counts) for counts in series.values())
        bins = zip(*series.values(), strict=False)
        tallest = max((sum(counts) for counts in bins), default=0)
        out.append(
            f'<div class="facts">on {on} connections: {sent} requests (a bar: {bin_seconds:g} s; '
            f"the tallest: {tallest})</div>"
        )
        out.append(svg.stacked_bars(series, bin_seconds, span, f"requests on {on} connections over time", deletions))
    return out


def settings_words(result: Document) -> str:
    """The rollout's settings in one paragraph."""
    settings, load, requests = result["settings"], result.get("load") or {}, result["requests"]
    delay = settings.get("prestop_delay_seconds")
    parts = [
        f"mode {result['mode']}: {len(result['pods'])} pods replaced in {result['duration_seconds']:.1f} s",
        str(settings.get("strategy")),
        f"grace period {settings.get('grace_period_seconds'):g} s",
        "no prestop delay" if delay is None else f"prestop delay {delay:g} s",
        f"endpoint propagation {settings.get('propagation_delay_seconds'):g} s",
        f"{settings.get('rps'):g} requests/s, {load.get('client')} client, {load.get('balancer')} balancer",
        f"{requests['sent']} sent, {requests['failed']} failed",
    ]
    return "; ".join(parts)


def simulation_page(result: Document) -> str:
    verdict, requests = str(result["verdict"]), result["requests"]
    pods: Sequence[Document] = result["pods"]
    reasons = list(result.get("reasons", []))
    if verdict == "pass":
        words = "no request failed; every drain ended inside the grace period"
    elif verdict == "inconclusive":
        words = "this machine ran the rehearsal too late to judge the app: run it again on a quieter one"
        reasons.insert(0, "")  # every doubt is listed below the heading
    else:
        words = reasons[0] if reasons else verdict
    doubts = [f"not counted, the rehearsal ran late: {d}" for d in result.get("doubts", []) if verdict == "fail"]
    body = [verdict_heading(verdict, words)]
    reasons = [*where_failed(pods), *reasons[1:], *doubts]
    if reasons:
        body.append('<ul class="reasons">' + "".join(f"<li>{escape(r)}</li>" for r in reasons) + "</ul>")
    body.append(f'<p class="facts">{escape(settings_words(result))}</p>')
    lanes = [simulated_lane(pod) for pod in pods]
    if len(lanes) > SUMMARY_FROM:
        body += summary_section(lanes)
    body += lanes_section(lanes, "Each deleted pod, in seconds after its deletion (t0)", simulated=True)
    body += requests_section(result)
    body += ["<h2>Requests by the phase their pod was in</h2>", phase_table(requests)]
    return document(f"simulate: {verdict}", body)


def page_of(reports: Reports) -> str:
    """`simulate --json` read back draws the rehearsal; any other input, the pods' reports."""
    return simulation_page(reports.simulation) if reports.simulation is not None else reports_page(reports)
