"""Reading what `shutdown-sidecar report` is given: final reports in any of the shapes they reach
an operator in, as one list of (pod, report). Standard library only (no server dependency), and
tolerant: unknown keys are kept and ignored, a report cut at the termination log's 4096 bytes is
read as far as it goes; only a document of no known shape is refused."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterator, Mapping
from typing import Any, Final

Document = dict[str, Any]

SHAPES: Final = (
    "a final report (the termination log's JSON)",
    "the /status document",
    'the "shutdown report" log line',
    "`kubectl get pods -o json` (or one pod)",
    "`simulate --json`",
)
# Keys only the report (and /status, the same document) has at its top level.
REPORT_KEYS: Final = frozenset({"outcome", "drain_end_source", "phases", "margin_seconds"})
LOG_MESSAGE: Final = "shutdown report"
# The text log format: `HH:MM:SS.mmm info    shutdown report report={...}`.
TEXT_LOG_LINE: Final = re.compile(r"\bshutdown report\b.*?\breport=(\{.*\})\s*$")
SIDECAR_CONTAINER: Final = "shutdown-sidecar"  # the chart's name for it; any container's report will do


class ShapeError(ValueError):
    """The input is none of SHAPES: one line for the user, exit status 2."""


@dataclasses.dataclass(frozen=True)
class PodReport:
    name: str
    report: Document
    truncated: bool  # cut short: some keys may be missing


@dataclasses.dataclass(frozen=True)
class Reports:
    shape: str
    pods: list[PodReport]
    without_report: list[str]  # pods of a kubectl list whose sidecar has not reported (yet)
    simulation: Document | None = None  # `simulate --json`: the whole rehearsal


def shape_error(what: str) -> ShapeError:
    return ShapeError(f"{what}; expected one of: {'; '.join(SHAPES)}")


def read_reports(text: str, source: str = "input") -> Reports:
    """Every report in `text`. Raises ShapeError when there is none of a known shape."""
    stripped = text.strip().lstrip("\ufeff")  # a byte-order mark from an editor on Windows
    if not stripped:
        raise shape_error(f"{source} is empty")
    try:
        document = json.loads(stripped)
    except ValueError:
        return read_lines(stripped, source)
    if not isinstance(document, dict):
        raise shape_error(f"{source} is JSON but not an object")
    return read_document(document, source)


def read_document(document: Document, source: str) -> Reports:
    if isinstance(document.get("pods"), list) and "verdict" in document:
        pods = [pod for pod in document["pods"] if isinstance(pod, dict)]
        reports = [
            PodReport(str(pod.get("name")), pod["report"], False) for pod in pods if is_report(pod.get("report"))
        ]
        return Reports("simulate --json", reports, [], simulation=document)
    if document.get("kind") in ("List", "PodList") or (document.get("kind") is None and "items" in document):
        return read_pods(document.get("items") or [], source)
    if document.get("kind") == "Pod":
        return read_pods([document], source)
    if document.get("msg") == LOG_MESSAGE and is_report(document.get("report")):
        return Reports("log line", [pod_report(document.get("pod") or "pod", document["report"])], [])
    if is_report(document):
        shape = "/status document" if document.get("phase") not in (None, "report", "done") else "final report"
        return Reports(shape, [pod_report(pod_name(document), document)], [])
    raise shape_error(f"{source} is a JSON object of unknown shape")


def read_lines(text: str, source: str) -> Reports:
    """Log lines (JSON or text, of one or many pods: `kubectl logs`), or a report cut short."""
    if text.startswith("{") and "\n" not in text:
        report = repair_truncated(text)
        if report is not None and is_report(report):
            return Reports("final report (cut short)", [PodReport(pod_name(report), report, True)], [])
    pods: list[PodReport] = []
    for number, line in enumerate(text.splitlines(), start=1):
        report = report_of_log_line(line)
        if report is not None:
            pods.append(pod_report(f"report {number}", report))
    if not pods:
        raise shape_error(f"{source} is not JSON and has no {LOG_MESSAGE!r} log line")
    if len(pods) == 1:
        pods = [dataclasses.replace(pods[0], name=pod_name(pods[0].report))]
    return Reports("log lines", pods, [])


def report_of_log_line(line: str) -> Document | None:
    line = line.strip()
    if not line:
        return None
    try:
        document = json.loads(line)
    except ValueError:
        match = TEXT_LOG_LINE.search(line)
        if match is None:
            return None
        try:
            document = {"msg": LOG_MESSAGE, "report": json.loads(match.group(1))}
        except ValueError:
            return None
    if isinstance(document, dict) and document.get("msg") == LOG_MESSAGE and is_report(document.get("report")):
        report: Document = document["report"]
        return report
    return None


def read_pods(items: list[Any], source: str) -> Reports:
    """A kubectl list: each pod's sidecar report, from the termination message of its current or
    last terminated state, native (initContainerStatuses) or classic (containerStatuses)."""
    pods: list[PodReport] = []
    without: list[str] = []
    namespaces = {item.get("metadata", {}).get("namespace") for item in items if isinstance(item, dict)}
    for item in items:
        if not isinstance(item, dict):
            continue
        metadata = item.get("metadata") or {}
        name = str(metadata.get("name", "pod"))
        if len(namespaces) > 1:
            name = f"{metadata.get('namespace')}/{name}"
        found = next(termination_reports(item.get("status") or {}), None)
        if found is None:
            without.append(name)
        else:
            pods.append(PodReport(name, *found))
    if not pods and not without:
        raise shape_error(f"{source} is a list with no pod")
    return Reports("kubectl get pods -o json", pods, without)


def termination_reports(status: Mapping[str, Any]) -> Iterator[tuple[Document, bool]]:
    statuses = [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]
    statuses.sort(key=lambda s: s.get("name") != SIDECAR_CONTAINER)  # the sidecar's first, when named so
    for container in statuses:
        for state in (container.get("state") or {}, container.get("lastState") or {}):
            message = (state.get("terminated") or {}).get("message")
            if isinstance(message, str) and message.strip():
                parsed = parse_message(message)
                if parsed is not None:
                    yield parsed


def parse_message(message: str) -> tuple[Document, bool] | None:
    """A termination message's report and whether it was cut short; None when it is no report."""
    try:
        report = json.loads(message)
    except ValueError:
        report = repair_truncated(message.strip())
        return (report, True) if report is not None and is_report(report) else None
    return (report, bool(report.get("truncated"))) if is_report(report) else None


def is_report(value: object) -> bool:
    return isinstance(value, dict) and not REPORT_KEYS.isdisjoint(value)


def pod_report(name: str, report: Document) -> PodReport:
    return PodReport(name, report, bool(report.get("truncated")))


def pod_name(report: Mapping[str, Any]) -> str:
    """The pod a lone report came from, when it says (the k8s resource attributes it may carry)."""
    for key in ("pod", "pod_name", "k8s.pod.name"):
        if isinstance(report.get(key), str):
            return str(report[key])
    return "pod"


def repair_truncated(text: str) -> Document | None:
    """JSON cut at a byte limit, closed after its last complete value: what it held, or None.
    Tries the cut at each comma from the end (a trailing key without its value is dropped)."""
    if not text.startswith("{"):
        return None
    commas = [index for index, char in enumerate(text) if char == ","]
    for cut in reversed(commas[-64:]):  # the last complete value is rarely far back
        head = text[:cut]
        closing = open_brackets(head)
        if closing is None:
            continue
        try:
            document = json.loads(head + "".join(reversed(closing)))
        except ValueError:
            continue
        if isinstance(document, dict):
            document["truncated"] = True
            return document
    return None


def open_brackets(text: str) -> list[str] | None:
    """The closing brackets still open at the end of `text`; None when it ends inside a string."""
    stack: list[str] = []
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "{[":
            stack.append("}" if char == "{" else "]")
        elif char in "}]" and stack:
            stack.pop()
    return None if in_string else stack
