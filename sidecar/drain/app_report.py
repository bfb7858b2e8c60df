"""app_report: the app's own word on POST /drain — how many requests it has in flight, and that it
has finished. Parses and applies the report; the HTTP route only maps errors to status codes. A
report is validated in full before any of it is applied, so a bad one changes nothing."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Final

from sidecar.telemetry.metrics import ShutdownMetrics

DRAIN_KEYS: Final = frozenset({"inflight", "event"})
# No app has a billion requests in flight; a larger number is a bug or an attack, and a 400-digit
# one would overflow the float gauge (a 500).
MAX_INFLIGHT: Final = 10**9


class DrainReportError(ValueError):
    """The body is not a drain report; the message says why (the route answers 400)."""


@dataclasses.dataclass(frozen=True)
class DrainReport:
    inflight: int | None
    complete: bool


def parse_drain_report(body: bytes) -> DrainReport:
    """`{"inflight": N}` and/or `{"event": "complete"}`; raises DrainReportError otherwise."""
    try:
        report = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: "[[[[..." nested deep
        raise DrainReportError("body is not JSON") from None
    if not isinstance(report, dict) or not report:
        raise DrainReportError('expected an object with "inflight" and/or "event"')
    unknown = set(report) - DRAIN_KEYS
    if unknown:
        raise DrainReportError(f"unknown keys: {', '.join(sorted(unknown))}")
    inflight = report.get("inflight")
    if inflight is not None and (type(inflight) is not int or not 0 <= inflight <= MAX_INFLIGHT):
        raise DrainReportError(f'"inflight" must be a whole number from 0 to {MAX_INFLIGHT}')
    event = report.get("event")
    if event is not None and event != "complete":
        raise DrainReportError('"event" must be "complete"')
    return DrainReport(inflight, event == "complete")


class AppReport:
    """Applies the app's reports: the in-flight gauge, and completion as the drain's end."""

    def __init__(self, *, metrics: ShutdownMetrics, report_end: Callable[[], bool]) -> None:
        """`report_end` ends the drain with source app_report; it returns whether it did."""
        self.metrics = metrics
        self._report_end = report_end

    def apply(self, report: DrainReport) -> bool:
        """Returns whether the report ended the drain."""
        if report.inflight is not None:
            self.metrics.app_inflight.set(report.inflight)
        return self._report_end() if report.complete else False
