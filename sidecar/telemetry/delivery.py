"""The final report delivered: to every sink at once within the time left, then written to the
termination log and logged as one line. Shaped like the OpenTelemetry SDK's MeterProvider.shutdown:
runs once, one deadline for all parts, keeps going when a part fails, and names every failure in
`errors`."""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final

from sidecar.deadline import EXIT_RESERVE_SECONDS, SINK_RESERVE_SECONDS
from sidecar.logs import LOGGER_NAME
from sidecar.telemetry.offload import run_in_thread
from sidecar.telemetry.report import Report

# Kubernetes keeps at most 4096 bytes of /dev/termination-log (and 12 KiB across all containers).
TERMINATION_LOG_MAX_BYTES: Final = 4096

logger = logging.getLogger(LOGGER_NAME)

ReportSink = Callable[[Mapping[str, Any]], None]  # blocking; run in a thread under the deadline


def termination_log_text(document: Mapping[str, Any]) -> str:
    """The document as compact JSON of at most 4096 bytes.

    Too long (many workers, many errors), it degrades in steps and says so with "truncated": the
    app's workers dropped, errors shortened,
    then phases dropped, then only the verdict kept: the outcome always survives.
    """
    steps: list[Callable[[dict[str, Any]], dict[str, Any]]] = [
        lambda d: d,
        lambda d: {**without_workers(d), "truncated": True},
        lambda d: {**without_workers(d), "errors": [e[:160] for e in d.get("errors", [])[:5]], "truncated": True},
        lambda d: {
            **without_workers(d),
            "errors": [e[:80] for e in d.get("errors", [])[:2]],
            "phases": {},
            "truncated": True,
        },
        lambda d: (
            {
                key: d.get(key)
                for key in (
                    "outcome",
                    "outcome_reason",
                    "trigger",
                    "drain_end_source",
                    "margin_seconds",
                    "t0",
                    "deadline",
                )
            }
            | {"truncated": True}
        ),
    ]
    text = ""
    for shrink in steps:
        text = json.dumps(shrink(dict(document)), separators=(",", ":"), default=str)
        if len(text.encode()) <= TERMINATION_LOG_MAX_BYTES:
            return text
    return text.encode()[:TERMINATION_LOG_MAX_BYTES].decode(errors="ignore")


def without_workers(document: dict[str, Any]) -> dict[str, Any]:
    """The document with the app section's per-worker entries dropped (256 of them would not fit)."""
    app = document.get("app")
    return {**document, "app": {**app, "workers": {}}} if isinstance(app, dict) and app.get("workers") else document


def termination_log_problem(path: str) -> str | None:
    """Why the report could not be written to `path`, checked at start without writing (a file
    there may hold the last report); None when it looks writable."""
    target = Path(path)
    if target.is_dir():
        return "it is a directory"
    if target.exists():
        return None if os.access(target, os.W_OK) else "it is not writable"
    parent = target.parent
    if not parent.exists():
        return f"its directory {parent} does not exist"
    if not parent.is_dir():
        return f"{parent} is not a directory"
    return None if os.access(parent, os.W_OK | os.X_OK) else f"it cannot be created in {parent}"


def write_termination_log(path: str, text: str) -> None:
    with open(path, "w", encoding="utf-8") as stream:
        stream.write(text)


def describe_error(part: str, exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return f"{part}: gave up at the deadline"
    return f"{part}: {type(exc).__name__}: {exc}"


async def deliver_report(
    document: Report,
    *,
    sinks: Mapping[str, ReportSink],
    termination_log: str | None,
    deadline: float,
) -> list[str]:
    """Send `document` to every sink at once, then the termination log, then one log line.

    `deadline` is the pod's (time.monotonic()); no part runs past it. Returns the errors, which
    are also added to document["errors"] before the local write so the file names them.
    """
    errors = document["errors"]
    sink_deadline = deadline - SINK_RESERVE_SECONDS

    async def deliver(name: str, sink: ReportSink) -> None:
        try:
            await run_in_thread(lambda: sink(document), deadline=sink_deadline, name=f"report-{name}")
        except Exception as exc:
            errors.append(describe_error(name, exc))

    await asyncio.gather(*(deliver(name, sink) for name, sink in sinks.items()))
    if termination_log is not None:
        text = termination_log_text(document)
        try:
            await run_in_thread(
                lambda: write_termination_log(termination_log, text),
                deadline=deadline - EXIT_RESERVE_SECONDS,
                name="report-termination-log",
            )
        except Exception as exc:
            errors.append(describe_error(f"termination log {termination_log}", exc))
    logger.info("shutdown report", extra={"fields": {"report": document}})
    return errors
