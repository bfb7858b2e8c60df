"""simulate's flags: declared here, parsed and checked into Options before anything starts. A bad
value is a SettingsError naming the flag, and the command exits 2. Reads no environment: a
rehearsal is what its flags say."""

from __future__ import annotations

import argparse
import dataclasses
import functools
import math
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final, TypeVar

from sidecar.config import SettingsError, parse_int, parse_positive_seconds, parse_seconds
from sidecar.deadline import Budget
from sidecar.simulate.podspec import PORT_PLACEHOLDER, Mode, demo_app_command

T = TypeVar("T")

MAX_PODS: Final = 50
# One process on two cores sends the load, runs the probes and hooks and times everything; past
# this rate its own lag would show up as failures that are not the app's.
MAX_RATE_PER_SECOND: Final = 1000.0
REPORT_RESERVE_SECONDS: Final = 1.0

EPILOG: Final = f"""\
what runs: N old pods (app + sidecar as --mode wires it), each on its own loopback ports; a
load generator sending GETs at --rps, each on a new connection to a pod the balancer believes
ready; a balancer that learns of each endpoint change only after --propagation-delay; and a
kubelet that replaces the pods one by one (a new pod ready, then an old one deleted): the
deleted pod's endpoint removal starts, its preStop hooks run, each container gets SIGTERM after
its hook and SIGKILL at the end of the grace period; native sidecars are stopped after the app.

APP CMD: the app to rehearse (default: the built-in demo app). It must listen on 127.0.0.1 at
the port given as {PORT_PLACEHOLDER} in the command, or in $PORT.

exit status: 0 when no request failed and every drain ended inside the grace period; 1 when
not; 2 for bad input or an app that cannot start; 130 when interrupted."""


@dataclasses.dataclass(frozen=True)
class Options:
    mode: Mode
    budget: Budget
    propagation_delay_seconds: float
    propagation_spread_seconds: float
    rate_per_second: float
    pods: int
    request_timeout_seconds: float
    seed: int
    app_command: tuple[str, ...]
    chart: Path | None
    values: Path | None
    logs: Path | None
    json: bool


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # dest: the CLI's subcommand is already `mode`.
    parser.add_argument(
        "--mode",
        dest="sidecar_mode",
        choices=[m.value for m in Mode],
        help="native: an init container with restartPolicy Always; classic: a second container; "
        "run: the app's entrypoint; none: no sidecar, the baseline [default native]",
    )
    parser.add_argument("--grace-period", metavar="S", help="terminationGracePeriodSeconds [default 10]")
    parser.add_argument("--prestop-delay", metavar="S", help="the sidecar's --prestop-delay [default 3]")
    parser.add_argument(
        "--propagation-delay",
        metavar="S",
        default="2",
        help="how long an endpoint change takes to reach the balancer [default 2]",
    )
    parser.add_argument(
        "--propagation-spread",
        metavar="S",
        default="0",
        help="up to this much more, drawn per change: uneven kube-proxies [default 0]",
    )
    parser.add_argument("--rps", metavar="N", default="50", help="requests per second [default 50]")
    parser.add_argument(
        "--pods", metavar="N", default="3", help=f"replicas, each replaced once [default 3, at most {MAX_PODS}]"
    )
    parser.add_argument(
        "--request-timeout", metavar="S", default="5", help="a request slower than this failed [default 5]"
    )
    parser.add_argument("--seed", metavar="N", default="1", help="seed for the propagation spread [default 1]")
    parser.add_argument(
        "--chart", metavar="DIR", help="take the pod (grace period, hooks, probes, sidecar flags) from this Helm chart"
    )
    parser.add_argument("--values", metavar="FILE", help="values file for --chart")
    parser.add_argument("--logs", metavar="DIR", help="keep every container's log and termination log here")
    parser.add_argument("--json", action="store_true", help="print one JSON object (verdict, requests, pods) on stdout")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- APP CMD [ARGS...] (default: the demo app)")


def _parse(flag: str, text: str, parse: Callable[[str], T]) -> T:
    try:
        return parse(text)
    except ValueError as exc:
        raise SettingsError(flag, str(exc)) from None


def _count(low: int, high: int) -> Callable[[str], int]:
    return functools.partial(parse_int, low=low, high=high, what="a whole number")


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"expected a number of requests per second, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"expected a number greater than 0, got {text!r}")
    if value > MAX_RATE_PER_SECOND:
        raise ValueError(f"at most {MAX_RATE_PER_SECOND:g} on one machine, got {text}")
    return value


def app_command_of(remainder: Sequence[str]) -> tuple[str, ...]:
    command = list(remainder[1:] if remainder[:1] == ["--"] else remainder)
    if remainder and not command:
        raise SettingsError("--", "give the app's command after --, or leave -- out for the demo app")
    if not command:
        return demo_app_command()
    if shutil.which(command[0]) is None:
        raise SettingsError("APP CMD", f"{command[0]}: command not found")
    return tuple(command)


def options_from_args(args: argparse.Namespace) -> Options:
    """Raises SettingsError for the first bad flag; nothing has started."""
    chart = None if args.chart is None else Path(args.chart)
    if chart is not None:
        for flag, value in (
            ("--mode", args.sidecar_mode),
            ("--grace-period", args.grace_period),
            ("--prestop-delay", args.prestop_delay),
        ):
            if value is not None:
                raise SettingsError(flag, "comes from the chart with --chart; set it in the chart's values (--values)")
    elif args.values is not None:
        raise SettingsError("--values", "only with --chart")
    grace = _parse("--grace-period", args.grace_period or "10", parse_positive_seconds)
    delay = _parse("--prestop-delay", args.prestop_delay or "3", parse_seconds)
    budget = Budget(grace, delay, REPORT_RESERVE_SECONDS)
    problem = budget.problem()
    if problem is not None:
        raise SettingsError("--grace-period", problem)
    return Options(
        mode=Mode(args.sidecar_mode or Mode.NATIVE.value),
        budget=budget,
        propagation_delay_seconds=_parse("--propagation-delay", args.propagation_delay, parse_seconds),
        propagation_spread_seconds=_parse("--propagation-spread", args.propagation_spread, parse_seconds),
        rate_per_second=_parse("--rps", args.rps, _rate),
        pods=_parse("--pods", args.pods, _count(1, MAX_PODS)),
        request_timeout_seconds=_parse("--request-timeout", args.request_timeout, parse_positive_seconds),
        seed=_parse("--seed", args.seed, _count(0, 2**31 - 1)),
        app_command=app_command_of(args.command),
        chart=chart,
        values=None if args.values is None else Path(args.values),
        logs=None if args.logs is None else Path(args.logs),
        json=args.json,
    )
