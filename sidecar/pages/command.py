"""`shutdown-sidecar report [FILE|-] [--html OUT]`: real pods' final reports read (any shape
sidecar.pages.documents accepts), printed one line per pod, or written as a page. Standard library
only, so it runs where the sidecar's server dependencies are not installed."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Final

from sidecar.pages.documents import SHAPES, Reports, ShapeError, read_reports
from sidecar.pages.words import number, seconds, summary_line

EXIT_CLEAN: Final = 0
EXIT_PROBLEM: Final = 1
EXIT_USAGE: Final = 2
# A `simulate --json` document is rendered key by key, as simulate printed it (sidecar.simulate.render,
# sidecar.pages.page): one cut by hand, or written by another version, may lack a key or hold a
# value of another type. Final reports, read tolerantly, never raise these.
UNRENDERABLE: Final = (KeyError, IndexError, TypeError, ValueError, AttributeError)

DESCRIPTION: Final = """\
Read the final shutdown reports of real pods and print one line per pod (outcome, margin before
SIGKILL, how the drain's end was seen, the hold, what was still open at the app's stop, late
connections), every time in seconds after the pod's t0; or, with --html, write them as one page
with a lane per pod."""

EPILOG: Final = (
    "accepted input (unknown keys are ignored):\n"
    + "".join(f"  {shape}\n" for shape in SHAPES)
    + """examples:
  kubectl get pods -l app=web -o json | shutdown-sidecar report
  kubectl get pods -o json | shutdown-sidecar report - --html shutdowns.html
  kubectl logs POD -c shutdown-sidecar | shutdown-sidecar report
A report cut short at the termination log's 4096 bytes is shown as far as it goes. Exit status:
0 when every pod drained cleanly, 1 when one did not, 2 for input of no known shape (or a
`simulate --json` document missing what simulate writes)."""
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", nargs="?", default="-", metavar="FILE", help="a file, or - for stdin (the default)")
    parser.add_argument("--html", metavar="OUT", type=Path, default=None, help="write the page to OUT instead")


def read_input(name: str) -> str:
    if name == "-":
        return sys.stdin.read()
    return Path(name).read_text(encoding="utf-8", errors="replace")


def lines_of(reports: Reports) -> str:
    """One line per pod, the totals when there are several, and the pods without a report."""
    width = max((len(pod.name) for pod in reports.pods), default=0)
    lines = [f"{pod.name:<{width}}  {summary_line(pod.report)}" for pod in reports.pods]
    if len(reports.pods) > 1:
        lines.append(totals_line(reports))
    if reports.without_report:
        names = ", ".join(reports.without_report[:10]) + (" ..." if len(reports.without_report) > 10 else "")
        lines.append(f"{len(reports.without_report)} without a report (not terminated yet?): {names}")
    return "".join(line + "\n" for line in lines)


def totals_line(reports: Reports) -> str:
    """Pods by outcome and the lowest margin: the one line to read when there are many."""
    outcomes: dict[str, int] = {}
    for pod in reports.pods:
        outcome = str(pod.report.get("outcome") or "no outcome")
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    counts = ", ".join(f"{n} {outcome}" for outcome, n in sorted(outcomes.items(), key=lambda item: -item[1]))
    margins = [
        pod.report["margin_seconds"] for pod in reports.pods if number(pod.report.get("margin_seconds")) is not None
    ]
    lowest = f"; lowest margin {seconds(min(margins))} before SIGKILL" if margins else ""
    return f"{len(reports.pods)} pods: {counts}{lowest}"


def rendered(reports: Reports, *, as_page: bool) -> str:
    """The page, or the text: simulate's own for a `simulate --json` document, else a line per pod."""
    if as_page:
        from sidecar.pages.page import page_of

        return page_of(reports)
    if reports.simulation is not None:
        from sidecar.simulate.render import render  # simulate --json read back: as simulate prints it

        return render(reports.simulation)
    return lines_of(reports)


def unreadable_simulation(exc: Exception) -> str:
    """Why a `simulate --json` document cannot be shown, in one line."""
    if isinstance(exc, KeyError):
        what = f"has no key {exc.args[0]!r}"
    else:
        what = f"has a value of another type than simulate writes ({exc})"
    return f"this `simulate --json` document {what}: cut by hand, or written by another version?"


def report(args: argparse.Namespace) -> int:
    source = "stdin" if args.file == "-" else args.file
    try:
        reports = read_reports(read_input(args.file), source)
    except OSError as exc:
        print(f"shutdown-sidecar report: error: cannot read {source}: {exc.strerror}", file=sys.stderr)
        return EXIT_USAGE
    except ShapeError as exc:
        print(f"shutdown-sidecar report: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        output = rendered(reports, as_page=args.html is not None)
    except UNRENDERABLE as exc:
        if reports.simulation is None:
            raise  # final reports are read key by key, tolerantly (sidecar.pages.words): a bug
        print(f"shutdown-sidecar report: error: {source}: {unreadable_simulation(exc)}", file=sys.stderr)
        return EXIT_USAGE
    if args.html is None:
        sys.stdout.write(output)
    else:
        try:
            args.html.write_text(output, encoding="utf-8")
        except OSError as exc:
            print(f"shutdown-sidecar report: error: --html: cannot write {args.html}: {exc.strerror}", file=sys.stderr)
            return EXIT_USAGE
        print(f"shutdown-sidecar report: wrote {args.html} ({len(reports.pods)} pods)", file=sys.stderr)
    if reports.simulation is not None:
        return EXIT_CLEAN if reports.simulation.get("verdict") == "pass" else EXIT_PROBLEM
    problem = any(pod.report.get("outcome") != "clean" for pod in reports.pods)
    return EXIT_PROBLEM if problem else EXIT_CLEAN
