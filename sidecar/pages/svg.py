"""Inline SVG for the pages: the lanes on a shared time axis, requests over time stacked by
outcome, and a histogram. Positions are percentages of the width, so one drawing fits a phone
and a desktop and its text keeps its size. Colours are Okabe-Ito (safe for colour blindness) and
every colour also has a pattern, a glyph or a label; every shape has a <title> for screen readers."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from html import escape
from typing import Final

from sidecar.pages.lanes import DRAIN, HOLD, SIDECAR, Lane

# Okabe & Ito (2008), "Color Universal Design".
BLACK, ORANGE, SKY, GREEN, YELLOW, BLUE, VERMILLION, PURPLE = (
    "#000000", "#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7",
)  # fmt: skip
GREY: Final = "#BBBBBB"
SEGMENT_FILL: Final = {HOLD: SKY, DRAIN: "url(#p-drain)", SIDECAR: "url(#p-sidecar)"}
OUTCOME_FILL: Final = {
    "ok": GREY,
    "refused": VERMILLION,
    "reset": "url(#p-reset)",
    "5xx": "url(#p-5xx)",
    "timeout": "url(#p-timeout)",
}
# Marks: a glyph as well as a colour, so each reads without colour.
MARK_GLYPH: Final = {
    "stop": ("|", BLACK),
    "endpoint": ("\u25bc", BLUE),
    "late": ("\u25cf", PURPLE),
    "sigkill": ("\u2715", VERMILLION),
}

DEFS: Final = f"""<svg width="0" height="0" style="position:absolute" aria-hidden="true"><defs>
<pattern id="p-drain" patternUnits="userSpaceOnUse" width="8" height="8" patternTransform="rotate(45)">
<rect width="8" height="8" fill="{ORANGE}"/><rect width="3" height="8" fill="#F5C96A"/></pattern>
<pattern id="p-sidecar" patternUnits="userSpaceOnUse" width="5" height="5">
<rect width="5" height="5" fill="#9A9A9A"/><circle cx="2.5" cy="2.5" r="1" fill="#fff"/></pattern>
<pattern id="p-reset" patternUnits="userSpaceOnUse" width="6" height="6" patternTransform="rotate(45)">
<rect width="6" height="6" fill="{PURPLE}"/><rect width="2" height="6" fill="#fff"/></pattern>
<pattern id="p-5xx" patternUnits="userSpaceOnUse" width="5" height="5">
<rect width="5" height="5" fill="{YELLOW}"/><circle cx="2.5" cy="2.5" r="1.3" fill="{BLACK}"/></pattern>
<pattern id="p-timeout" patternUnits="userSpaceOnUse" width="6" height="6">
<rect width="6" height="6" fill="#444"/><path d="M0 0L6 6M6 0L0 6" stroke="#fff" stroke-width="1"/></pattern>
</defs></svg>"""


def pct(value: float, total: float) -> str:
    return f"{max(0.0, min(100.0, value / total * 100)):.3f}%" if total > 0 else "0%"


def title(text: str) -> str:
    return f"<title>{escape(text)}</title>"


def tick_step(span: float, most: int = 10) -> float:
    """A round step (1, 2 or 5 times a power of ten) giving at most `most` ticks over `span`."""
    raw = span / most if span > 0 else 1.0
    power = 10.0 ** math.floor(math.log10(raw))
    return next(step * power for step in (1, 2, 5, 10) if step * power >= raw)


def axis(span: float, label: str) -> str:
    step = tick_step(span)
    parts = [f'<svg class="axis" width="100%" height="22" role="img" aria-label="{escape(label)}">']
    count = int(span / step + 1e-9)
    for index in range(count + 1):
        x = pct(index * step, span)
        share = index * step / span if span > 0 else 0.0  # a lane with no time at all
        anchor = "start" if index == 0 else "end" if share > 0.96 else "middle"
        parts.append(f'<line x1="{x}" x2="{x}" y1="16" y2="22" stroke="#555"/>')
        parts.append(f'<text x="{x}" y="12" text-anchor="{anchor}">{index * step:g} s</text>')
    parts.append("</svg>")
    return "".join(parts)


def lane_svg(lane: Lane, span: float) -> str:
    """One pod's shutdown on the shared axis: the grace period as a frame, the segments in it,
    marks above and failed requests as ticks below."""
    described = f"{lane.name}: {lane.status}. " + "; ".join(s.label for s in lane.segments)
    parts = [f'<svg class="bar" width="100%" height="40" role="img" aria-label="{escape(described)}">']
    grace = pct(lane.grace_seconds, span)
    parts.append(
        f'<rect x="0" y="10" width="{grace}" height="18" fill="#F4F4F4" stroke="#888">'
        f"{title(f'grace period: {lane.grace_seconds:g} s from t0 to SIGKILL')}</rect>"
    )
    for segment in lane.segments:
        x, width = pct(segment.start, span), pct(max(segment.end - segment.start, span / 400), span)
        parts.append(
            f'<rect x="{x}" y="10" width="{width}" height="18" fill="{SEGMENT_FILL[segment.kind]}">'
            f"{title(f'{segment.label}: {segment.start:.2f} s to {segment.end:.2f} s after t0')}</rect>"
        )
        if (segment.end - segment.start) / span > 0.06:
            # A nested <svg> clips its label to the segment, however narrow the screen.
            parts.append(
                f'<svg x="{x}" y="10" width="{pct(segment.end - segment.start, span)}" height="18">'
                f'<text class="in" x="4" y="13">{escape(segment.label)}</text></svg>'
            )
    parts.append(f'<line x1="{grace}" x2="{grace}" y1="4" y2="34" stroke="{VERMILLION}" stroke-dasharray="3 2"/>')
    for mark in lane.marks:
        glyph, colour = MARK_GLYPH.get(mark.kind, ("?", BLACK))
        x = pct(mark.at, span)
        if mark.kind == "pinned":
            count = mark.label.split()[0]
            parts.append(
                f'<text class="mark" x="{x}" dx="4" y="9" style="fill:{VERMILLION}">'
                f"\u26a0 {count} pinned{title(mark.label)}</text>"
            )
        elif mark.kind == "stop":
            parts.append(
                f'<line x1="{x}" x2="{x}" y1="6" y2="30" stroke="{BLACK}" stroke-width="2">{title(mark.label)}</line>'
            )
        else:
            parts.append(
                f'<text class="mark" x="{x}" y="9" text-anchor="middle" style="fill:{colour}">'
                f"{glyph}{title(mark.label)}</text>"
            )
    parts += failure_ticks(lane.failures, span)
    parts.append("</svg>")
    return "".join(parts)


def failure_ticks(failures: Sequence[tuple[float, str]], span: float, buckets: int = 200) -> list[str]:
    """Failed requests under the bar, gathered into narrow buckets (hundreds stay drawable)."""
    counts: dict[int, dict[str, int]] = {}
    for at, kind in failures:
        bucket = max(0, min(buckets - 1, int(at / span * buckets)))
        counts.setdefault(bucket, {}).setdefault(kind, 0)
        counts[bucket][kind] += 1
    parts = []
    for bucket, kinds in sorted(counts.items()):
        start = bucket * span / buckets
        what = ", ".join(f"{n} {kind}" for kind, n in kinds.items())
        parts.append(
            f'<rect x="{pct(start, span)}" y="30" width="3" height="9" fill="{VERMILLION}">'
            f"{title(f'failed requests {start:.1f} s after t0: {what}')}</rect>"
        )
    return parts


def stacked_bars(
    series: Mapping[str, Sequence[int]],
    bin_seconds: float,
    span: float,
    label: str,
    deletions: Sequence[tuple[float, str]] = (),
) -> str:
    """Requests per time bin, stacked by outcome (ok at the bottom), 100 px high, with a dashed
    line where each pod was deleted (named while there are few enough to read)."""
    height, top = 100, 14
    bins = max((len(counts) for counts in series.values()), default=0)
    totals = [sum(counts[i] for counts in series.values() if i < len(counts)) for i in range(bins)]
    peak = max(totals, default=0) or 1
    parts = [f'<svg class="chart" width="100%" height="{height + top}" role="img" aria-label="{escape(label)}">']
    for index in range(bins):
        y = float(top + height)
        described = []
        for outcome, fill in OUTCOME_FILL.items():
            counts = series.get(outcome, ())
            n = counts[index] if index < len(counts) else 0
            if not n:
                continue
            h = max(n / peak * height, 0 if outcome == "ok" else 3)
            y -= h
            parts.append(
                f'<rect x="{pct(index * bin_seconds, span)}" y="{y:.1f}" width="{pct(bin_seconds * 0.9, span)}" '
                f'height="{h:.1f}" fill="{fill}"/>'
            )
            described.append(f"{n} {outcome}")
        if described:
            when = f"{index * bin_seconds:g} to {(index + 1) * bin_seconds:g} s"
            parts.append(
                f'<rect x="{pct(index * bin_seconds, span)}" y="{top}" width="{pct(bin_seconds, span)}" '
                f'height="{height}" fill="transparent">{title(f"{when}: " + ", ".join(described))}</rect>'
            )
    for at, name in deletions:
        x = pct(at, span)
        parts.append(
            f'<line x1="{x}" x2="{x}" y1="{top - 4}" y2="{top + height}" stroke="{BLUE}" stroke-dasharray="4 3">'
            f"{title(f'{name} deleted at {at:.1f} s')}</line>"
        )
        if len(deletions) <= 8:
            parts.append(f'<text x="{x}" dx="2" y="{top - 4}" style="fill:{BLUE}">{escape(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def histogram(values: Sequence[float], label: str, unit: str = "s", bins: int = 12) -> str:
    """Counts of `values` in equal bins, each bar labelled with its range and count."""
    if not values:
        return ""
    low, high = min(values), max(values)
    width = (high - low) / bins or 1.0
    counts = [0] * bins
    for value in values:
        counts[min(bins - 1, int((value - low) / width))] += 1
    peak = max(counts)
    parts = [f'<svg class="chart" width="100%" height="136" role="img" aria-label="{escape(label)}">']
    for index, n in enumerate(counts):
        start = low + index * width
        h = n / peak * 88
        x, w = pct(index, bins), pct(0.9, bins)
        fill = VERMILLION if start <= 0 else BLUE  # the bins holding margins of zero or less: no time left
        parts.append(
            f'<rect x="{x}" y="{106 - h:.1f}" width="{w}" height="{h:.1f}" fill="{fill}">'
            f"{title(f'{n} pods with a margin of {start:.1f} to {start + width:.1f} {unit}')}</rect>"
        )
        if n:
            parts.append(f'<text x="{pct(index + 0.45, bins)}" y="{102 - h:.1f}" text-anchor="middle">{n}</text>')
        if index % 2 == 0:
            parts.append(f'<text x="{x}" y="124">{start:.1f} {unit}</text>')
    parts.append("</svg>")
    return "".join(parts)
