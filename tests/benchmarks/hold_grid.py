"""Issue #22's comparison grid: fixed 5 s against `--prestop-delay auto`, rehearsed by `simulate`
over propagation delay, request rate, load shape, balancer, client and workload kind (144
cases, two holds each). Each run is one `simulate --json` subprocess; its figures go to a JSON
Lines file as they come, so an interrupted grid resumes where it stopped, and the table is
printed from that file. Timings are measured, never asserted.

    python -m tests.benchmarks.hold_grid run --out grid.jsonl [--jobs 3] [--only KEY=VALUE ...]
    python -m tests.benchmarks.hold_grid run --out grid.jsonl --only hold=auto-max9 propagation=6
    python -m tests.benchmarks.hold_grid table grid.jsonl
    python -m tests.benchmarks.hold_grid compare grid.jsonl --holds fixed auto auto-max9

A run `simulate` calls inconclusive (this machine too late to judge) is kept in the file and run
again by the next `run` over the same file; the table uses the latest conclusive run of each."""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import itertools
import json
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

# (mean, spread) of the propagation delay, as the issue gives them: "0.5 / 2 / 6 s (with spread)".
PROPAGATIONS: Final = ((0.5, 0.5), (2.0, 1.0), (6.0, 1.0))
RATES: Final = (2, 50, 500)
SHAPES: Final = ("steady", "onoff")
BALANCERS: Final = ("l4", "l7")
CLIENTS: Final = ("pooled", "fresh")
KINDS: Final = ("Deployment", "StatefulSet")
HOLDS: Final = {
    "fixed": ("--prestop-delay", "5"),
    "auto": ("--prestop-delay", "auto", "--prestop-delay-max", "15"),
    # The chart's default: its 30 s grace period, 20 s expected drain and 1 s reserve leave 9 s.
    "auto-max9": ("--prestop-delay", "auto", "--prestop-delay-max", "9"),
}
# Holds run only when asked for by name (--only hold=...), never in the whole grid's run.
ASKED_ONLY: Final = ("auto-requests", "auto-max9")
# The evidence an operator would configure: behind kube-proxy (l4) new connections are the routing
# decisions, behind a per-request proxy (l7) requests are. `auto-requests` (run only when asked
# with --only hold=auto-requests) takes requests behind l4 too: the case the README warns against.
EVIDENCE: Final = {"l4": "connections", "l7": "requests"}
# Every run: 3 pods, a grace period with room for auto's 15 s maximum, and the integrated app
# (uvicorn + Starlette + SidecarMiddleware), which reports the requests it starts to POST /drain.
COMMON: Final = ("--pods", "3", "--grace-period", "20", "--app", "asgi", "--json")
RUN_TIMEOUT_SECONDS: Final = 300.0


@dataclasses.dataclass(frozen=True)
class Case:
    propagation: float
    spread: float
    rate: int
    shape: str
    balancer: str
    client: str
    kind: str
    hold: str

    @property
    def key(self) -> str:
        return (
            f"{self.propagation:g}±{self.spread:g}s {self.rate}/s {self.shape} {self.balancer} "
            f"{self.client} {self.kind} {self.hold}"
        )

    def arguments(self) -> list[str]:
        hold = HOLDS.get(self.hold, HOLDS["auto"])
        evidence = "requests" if self.hold == "auto-requests" else EVIDENCE[self.balancer]
        return [
            *COMMON,
            *hold,
            *(("--prestop-evidence", evidence) if self.hold != "fixed" else ()),
            *("--propagation-delay", f"{self.propagation:g}", "--propagation-spread", f"{self.spread:g}"),
            *("--rps", str(self.rate), "--load-shape", self.shape),
            *("--balancer", self.balancer, "--client", self.client, "--kind", self.kind),
        ]


def all_cases() -> Iterator[Case]:
    for (propagation, spread), rate, shape, balancer, client, kind, hold in itertools.product(
        PROPAGATIONS, RATES, SHAPES, BALANCERS, CLIENTS, KINDS, (*HOLDS, "auto-requests")
    ):
        if hold != "auto-requests" or balancer == "l4":  # behind l7 auto takes requests anyway
            yield Case(propagation, spread, rate, shape, balancer, client, kind, hold)


def matches(case: Case, only: Mapping[str, str]) -> bool:
    """`only`: field name to the value it must have, as text (`rate=50`, `hold=auto`)."""
    return all(
        f"{getattr(case, name):g}" == value
        if isinstance(getattr(case, name), float)
        else str(getattr(case, name)) == value
        for name, value in only.items()
    )


def summarise(result: Mapping[str, Any]) -> dict[str, Any]:
    """The figures the table needs from one `simulate --json` result."""
    pods = result["pods"]
    holds = [pod["report"]["hold"] for pod in pods if isinstance(pod.get("report"), dict) and pod["report"].get("hold")]
    durations = [h["duration_seconds"] for h in holds if h.get("duration_seconds") is not None]
    ends = [
        pod["deleted_after_seconds"] + pod["terminated_after_seconds"]
        for pod in pods
        if pod.get("terminated_after_seconds") is not None
    ]
    starts = [pod["deleted_after_seconds"] for pod in pods]
    return {
        "verdict": result["verdict"],
        "sent": result["requests"]["sent"],
        "failed": result["requests"]["failed"],
        "by_kind": {kind: n for kind, n in result["requests"]["by_kind"].items() if n},
        "holds": durations,
        "released_by": [h.get("released_by") for h in holds],
        "counting": sorted({str(h.get("counting")) for h in holds}),
        "evidence": [h.get("evidence") for h in holds],
        "windows": [h.get("window_seconds") for h in holds],
        "rates": [h.get("rate_per_second") for h in holds],
        "gaps": [h.get("longest_gap_seconds") for h in holds],
        "warm_up_seconds": result.get("settings", {}).get("warm_up_seconds"),
        "rollout_seconds": round(max(ends) - min(starts), 2) if ends and starts else None,
        "doubts": result.get("doubts", []),
    }


def run_case(case: Case) -> dict[str, Any]:
    started = time.monotonic()
    completed = subprocess.run(
        [sys.executable, "-m", "sidecar", "simulate", *case.arguments()],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_SECONDS,
        check=False,
    )
    record: dict[str, Any] = {"case": dataclasses.asdict(case), "key": case.key, "exit": completed.returncode}
    record["wall_seconds"] = round(time.monotonic() - started, 2)
    try:
        record.update(summarise(json.loads(completed.stdout)))
    except (ValueError, KeyError, TypeError):
        record["verdict"] = "error"
        record["stderr"] = completed.stderr[-2000:]
    return record


def read_records(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def conclusive(records: Iterable[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    """The latest conclusive record of each case, by key."""
    latest: dict[str, Mapping[str, Any]] = {}
    for record in records:
        if record["verdict"] in ("pass", "fail"):
            latest[record["key"]] = record
    return latest


def run(out: Path, jobs: int, only: Mapping[str, str]) -> None:
    done = conclusive(read_records(out))
    todo = [
        case
        for case in all_cases()
        if matches(case, only)
        and case.key not in done
        and (case.hold not in ASKED_ONLY or only.get("hold") == case.hold)
    ]
    # Heaviest first, so the last minutes are not one 500/s run alone.
    todo.sort(key=lambda case: (-case.rate, case.key))
    print(f"{len(todo)} runs to do, {jobs} at a time", file=sys.stderr)
    with concurrent.futures.ThreadPoolExecutor(jobs) as pool, out.open("a") as sink:
        for record in pool.map(run_case, todo):
            sink.write(json.dumps(record) + "\n")
            sink.flush()
            print(f"{record['verdict']:<12} {record['wall_seconds']:>6.1f} s  {record['key']}", file=sys.stderr)


def hold_cell(record: Mapping[str, Any] | None) -> tuple[str, str, str]:
    if record is None:
        return "not run", "", ""
    failed = f"**{record['failed']:,} of {record['sent']:,}**" if record["failed"] else f"0 of {record['sent']:,}"
    holds = record["holds"]
    hold = f"{statistics.median(holds):.2f} / {max(holds):.2f}" if holds else "-"
    released = Counter(r for r in record["released_by"] if r)
    if released and set(released) != {"fixed"}:
        hold += " (" + ", ".join(f"{name} x{n}" for name, n in released.most_common()) + ")"
    return failed, hold, f"{record['rollout_seconds']}"


def table(records: Sequence[Mapping[str, Any]], versus: str = "auto") -> str:
    """Fixed 5 s beside `versus` (auto, or auto-requests), one row per case run."""
    latest = conclusive(records)
    lines = [
        "| propagation | rate | shape | balancer | client | kind | fixed 5 s: failed | hold med / max | rollout s "
        f"| {versus}: failed | hold med / max (released by) | rollout s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    seen: set[str] = set()
    for case in all_cases():
        row = dataclasses.replace(case, hold="fixed")
        if row.key in seen:
            continue
        seen.add(row.key)
        fixed = latest.get(row.key)
        auto = latest.get(dataclasses.replace(case, hold=versus).key)
        if fixed is None and auto is None:
            continue
        lines.append(
            f"| {case.propagation:g} ± {case.spread:g} s | {case.rate}/s | {case.shape} | {case.balancer} | "
            f"{case.client} | {case.kind} | " + " | ".join((*hold_cell(fixed), *hold_cell(auto))) + " |"
        )
    return "\n".join(lines)


HOLD_NAMES: Final = {
    "fixed": "fixed 5 s",
    "auto": "auto max 15",
    "auto-max9": "auto max 9",
    "auto-requests": "auto-requests",
}


def compare(records: Sequence[Mapping[str, Any]], holds: Sequence[str]) -> str:
    """One row per propagation and rate over the cases every one of `holds` ran (conclusively):
    cases with a failed request, failed requests, hold median / max over every pod, rollout median."""
    latest = conclusive(records)
    groups: dict[tuple[float, float, int], list[list[Mapping[str, Any]]]] = {}
    which: dict[tuple[float, float, int], set[str]] = {}
    for case in all_cases():
        if case.hold != "fixed":
            continue
        runs = [latest.get(dataclasses.replace(case, hold=hold).key) for hold in holds]
        if any(run is None for run in runs):
            continue
        group = (case.propagation, case.spread, case.rate)
        groups.setdefault(group, []).append([run for run in runs if run is not None])
        which.setdefault(group, set()).add(f"{case.balancer} {case.client}")
    names = " / ".join(HOLD_NAMES.get(hold, hold) for hold in holds)
    lines = [
        f"| propagation | rate | balancer, client | cases | cases with a failed request: {names} | failed requests "
        "| hold median, s | hold max, s | rollout median, s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for (propagation, spread, rate), cases in groups.items():
        columns = [[runs[index] for runs in cases] for index in range(len(holds))]
        failing = " / ".join(str(sum(1 for run in column if run["failed"])) for column in columns)
        failed = " / ".join(
            f"{sum(run['failed'] for run in column):,} of {sum(run['sent'] for run in column):,}" for column in columns
        )
        held = [[hold for run in column for hold in run["holds"]] for column in columns]
        median = " / ".join(f"{statistics.median(h):.1f}" if h else "-" for h in held)
        longest = " / ".join(f"{max(h):.1f}" if h else "-" for h in held)
        rollout = " / ".join(f"{statistics.median(run['rollout_seconds'] for run in column):.1f}" for column in columns)
        combos = which[(propagation, spread, rate)]
        shown = "all four" if len(combos) == len(BALANCERS) * len(CLIENTS) else ", ".join(sorted(combos))
        lines.append(
            f"| {propagation:g} ± {spread:g} s | {rate}/s | {shown} | {len(cases)} | {failing} | {failed} | {median} "
            f"| {longest} | {rollout} |"
        )
    return "\n".join(lines)


def parse_only(pairs: Sequence[str]) -> dict[str, str]:
    fields = {field.name for field in dataclasses.fields(Case)}
    only: dict[str, str] = {}
    for pair in pairs:
        name, _, value = pair.partition("=")
        if name not in fields or not value:
            raise SystemExit(f"--only takes FIELD=VALUE with FIELD one of {', '.join(sorted(fields))}, got {pair!r}")
        only[name] = value
    return only


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.benchmarks.hold_grid",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser("run", help="run the cases not yet in --out")
    run_parser.add_argument("--out", type=Path, required=True, help="JSON Lines file, appended to")
    run_parser.add_argument("--jobs", type=int, default=2, help="rehearsals at a time [default 2]")
    run_parser.add_argument("--only", nargs="*", default=[], metavar="FIELD=VALUE")
    table_parser = commands.add_parser("table", help="print the Markdown table of a results file")
    table_parser.add_argument("results", type=Path)
    table_parser.add_argument("--versus", choices=("auto", *ASKED_ONLY), default="auto")
    compare_parser = commands.add_parser("compare", help="print holds side by side, one row per propagation and rate")
    compare_parser.add_argument("results", type=Path)
    compare_parser.add_argument("--holds", nargs="+", choices=tuple(HOLD_NAMES), default=["fixed", "auto"])
    args = parser.parse_args(argv)
    if args.command == "run":
        run(args.out, args.jobs, parse_only(args.only))
    elif args.command == "compare":
        print(compare(read_records(args.results), args.holds))
    else:
        print(table(read_records(args.results), args.versus))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
