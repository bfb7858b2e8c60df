"""simulate's flags, each declared once as an Options field (flag, default, help, parser), from
which the argparse arguments, the defaults in --help and the checked Options derive. A bad value
is a SettingsError naming the flag, and the command exits 2. Reads no environment: a rehearsal
is what its flags say."""

from __future__ import annotations

import argparse
import dataclasses
import functools
import math
import shutil
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Final, TypeVar

from sidecar.config import (
    SettingsError,
    budget_problem,
    parse_int,
    parse_positive_seconds,
    parse_prestop_delay,
    parse_seconds,
    parse_signal_name,
)
from sidecar.deadline import Budget
from sidecar.hold_rule import DEFAULT_HOLD_RULE, EVIDENCE_MODES, HoldRule
from sidecar.simulate.load import LOAD_SHAPES
from sidecar.simulate.podspec import (
    HOST_PLACEHOLDER,
    PORT_PLACEHOLDER,
    SIDECAR_PLACEHOLDER,
    SIDECAR_URL_ENV,
    Mode,
    demo_app_command,
)
from sidecar.simulate.pool import BalancerKind, ClientKind
from sidecar.simulate.strategy import Kind, Strategy, StrategyType, int_or_percent

T = TypeVar("T")

MAX_PODS: Final = 50
MAX_CONNECTIONS: Final = 1000
# One process on two cores sends the load, runs the probes and hooks and times everything; past
# this rate its own lag would show up as failures that are not the app's.
MAX_RATE_PER_SECOND: Final = 1000.0
# The sidecar's default --report-reserve: simulate runs the sidecar with it and has no flag for it.
REPORT_RESERVE_SECONDS: Final = 1.0
# The CLI's namespace already has `mode` (its subcommand): simulate's values are kept apart.
DEST_PREFIX: Final = "simulate_"
BUILT_IN_APPS: Final = ("demo", "asgi")
# Besides the from_chart ones: what a workload says, in a manifest or a chart's render (a
# DaemonSet's nodes stay --pods' default).
FROM_MANIFEST: Final = frozenset({"pods", "kind", "strategy_type", "max_surge", "max_unavailable", "min_ready_seconds"})

EPILOG: Final = f"""\
what runs: N old pods (app + sidecar as --mode wires it), each at its own loopback address
(127.0.0.2, .3, ...: its pod IP) and ports; a load generator sending GETs at --rps over
--connections keep-alive connections (or a new one each, --client fresh); a balancer that
learns of each EndpointSlice change (ready, serving, terminating) only after
--propagation-delay and routes each new connection (l4, as kube-proxy: a connection stays on
its pod; with no ready endpoint, to serving terminating ones) or each request (l7); a workload
controller that replaces the pods as --kind and its strategy say; and a kubelet that runs each
container's preStop hook once at the pod IP, then its stop signal, then SIGKILL when the grace
period is over; native sidecars are stopped after the app.

APP CMD: the app to rehearse (default: the built-in demo app). It must listen at the pod's
address, {HOST_PLACEHOLDER} in the command or $HOST (or 0.0.0.0), on the port given as
{PORT_PLACEHOLDER} or $PORT. Its sidecar's URL, for GET /events, is {SIDECAR_PLACEHOLDER} in the
command and ${SIDECAR_URL_ENV} (neither with --mode none).

exit status: 0 when no request failed and every drain ended inside the grace period; 1 when
not; 3 (inconclusive) when this machine ran the rehearsal so late (a stalled event loop, late
kubelet or balancer actions, a load behind its schedule) that the lateness could have caused
every failure or hidden one; 2 for bad input or an app that cannot start; 128+N when stopped by
signal N (SIGINT, SIGTERM, SIGHUP), with nothing it started left running."""


def option(
    flag: str,
    default: str | None,
    help: str,
    *,
    parse: Callable[[str], T],
    metavar: str | None = None,
    choices: Sequence[str] = (),
    from_chart: bool = False,
) -> T:
    """Declare an option. `default` is text, parsed as a value given on the command line would be
    (None: the value is None unless given); `from_chart`: --chart supplies it, so it may not be
    given with --chart. Typed as what `parse` returns so the field keeps its type for mypy."""
    metadata = {
        "flag": flag,
        "default": default,
        "help": help,
        "parse": parse,
        "metavar": metavar,
        "choices": tuple(choices),
        "from_chart": from_chart,
    }
    field: Any = dataclasses.field(metadata=metadata)
    return field  # type: ignore[no-any-return]


def switch(flag: str, help: str) -> bool:
    """Declare an option without a value: False unless given."""
    field: Any = dataclasses.field(metadata={"flag": flag, "default": None, "help": help, "parse": None})
    return field  # type: ignore[no-any-return]


def _count(low: int, high: int) -> Callable[[str], int]:
    return functools.partial(parse_int, low=low, high=high, what="a whole number")


READINESS_UNTIL: Final = ("t0", "stop")


def _readiness_until(text: str) -> str:
    if text not in READINESS_UNTIL:
        raise ValueError(f"expected one of {', '.join(READINESS_UNTIL)}, got {text!r}")
    return text


def _page_path(text: str) -> Path:
    # Checked before the rehearsal runs: a page that cannot be written should not cost one.
    path = Path(text)
    if path.is_dir() or not path.parent.is_dir():
        raise ValueError(f"{text!r} is not a file in an existing directory")
    return path


def _whole_seconds(text: str) -> float:
    # terminationGracePeriodSeconds is a whole number of seconds (int64), as the kubelet counts it.
    if not text.strip().isdigit() or int(text) < 1:
        raise ValueError(f"expected a whole number of seconds (terminationGracePeriodSeconds), got {text!r}")
    return float(text)


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


@dataclasses.dataclass(frozen=True, kw_only=True)
class Options:
    # option() returns a dataclasses.field (RUF009 cannot tell for types it does not know immutable).
    mode: Mode = option(  # noqa: RUF009
        "--mode",
        Mode.NATIVE.value,
        "native: an init container with restartPolicy Always; classic: a second container; "
        "run: the app's entrypoint; none: no sidecar, the baseline",
        parse=Mode,
        choices=[m.value for m in Mode],
        from_chart=True,
    )
    grace_period_seconds: float = option(
        "--grace-period",
        "10",
        "terminationGracePeriodSeconds",
        parse=_whole_seconds,
        metavar="S",
        from_chart=True,
    )
    prestop_delay_seconds: float | None = option(
        "--prestop-delay",
        "auto",
        "the sidecar's --prestop-delay: seconds, or auto (the hold ends once new arrivals stop, within "
        "--prestop-delay-max), the sidecar's default",
        parse=parse_prestop_delay,
        metavar="S|auto",
        from_chart=True,
    )
    prestop_delay_max_seconds: float = option(
        "--prestop-delay-max",
        "8",
        "with --prestop-delay auto: the sidecar's --prestop-delay-max (8 fits the default 10 s grace period; "
        "the sidecar's own default, 15, does not)",
        parse=parse_positive_seconds,
        metavar="S",
    )
    prestop_evidence: str = option(
        "--prestop-evidence",
        DEFAULT_HOLD_RULE.evidence,
        "with --prestop-delay auto: the sidecar's --prestop-evidence, what sets the quiet window: connections "
        "(right for --balancer l4, kube-proxy) or requests (right for l7, when the app reports them: --app asgi)",
        parse=str,
        choices=EVIDENCE_MODES,
    )
    network_latency_seconds: float = option(
        "--network-latency",
        "0.0005",
        "one network hop, one way (about one cross-node hop; 0: loopback as it is): requests, "
        "responses and connects cross it, and a server's close reaches the client as late",
        parse=parse_seconds,
        metavar="S",
    )
    load_shape: str = option(
        "--load-shape",
        "steady",
        "steady: --rps evenly; onoff: 1 s at twice --rps, then 1 s quiet (the same mean)",
        parse=str,
        choices=LOAD_SHAPES,
    )
    propagation_delay_seconds: float = option(
        "--propagation-delay",
        "2",
        "how long an endpoint change takes to reach the balancer",
        parse=parse_seconds,
        metavar="S",
    )
    propagation_spread_seconds: float = option(
        "--propagation-spread",
        "0",
        "up to this much more, drawn per change: uneven kube-proxies",
        parse=parse_seconds,
        metavar="S",
    )
    rate_per_second: float = option("--rps", "50", "requests per second", parse=_rate, metavar="N")
    client: ClientKind = option(  # noqa: RUF009
        "--client",
        ClientKind.POOLED.value,
        "pooled: keep-alive connections reused as HTTP client pools do (checked before reuse, "
        "dropped after Connection: close, no retries); fresh: a new connection per request",
        parse=ClientKind,
        choices=[c.value for c in ClientKind],
    )
    balancer: BalancerKind = option(  # noqa: RUF009
        "--balancer",
        BalancerKind.L4.value,
        "l4: per connection, as kube-proxy (a connection stays on its pod after the endpoint is removed); "
        "l7: per request over per-pod pools, as an ingress proxy",
        parse=BalancerKind,
        choices=[b.value for b in BalancerKind],
    )
    connections: int = option(
        "--connections",
        "16",
        "keep-alive connections in all (l4: that many clients; l7: the proxy's idle connections)",
        parse=_count(1, MAX_CONNECTIONS),
        metavar="N",
    )
    pods: int = option(
        "--pods", "3", f"replicas, each replaced once, at most {MAX_PODS}", parse=_count(1, MAX_PODS), metavar="N"
    )
    kind: Kind = option(  # noqa: RUF009
        "--kind",
        Kind.DEPLOYMENT.value,
        "the workload whose controller replaces the pods",
        parse=Kind,
        choices=[k.value for k in Kind],
    )
    strategy_type: StrategyType = option(  # noqa: RUF009
        "--strategy",
        StrategyType.ROLLING_UPDATE.value,
        "a Deployment's strategy type",
        parse=StrategyType,
        choices=[t.value for t in StrategyType],
    )
    max_surge: str | None = option(
        "--max-surge", None, "a whole number or N%% (default: 25%% for a Deployment, 0 for a DaemonSet)",
        parse=int_or_percent, metavar="N",
    )  # fmt: skip
    max_unavailable: str | None = option(
        "--max-unavailable", None, "a whole number or N%% (default: 25%% for a Deployment, 1 for a DaemonSet)",
        parse=int_or_percent, metavar="N",
    )  # fmt: skip
    min_ready_seconds: int = option(
        "--min-ready-seconds", "0", "how long a new pod must be ready to count as available",
        parse=_count(0, 3600), metavar="S",
    )  # fmt: skip
    stop_signal: str = option(
        "--stop-signal", "SIGTERM",
        "the app container's stop signal (lifecycle.stopSignal, or the image's STOPSIGNAL)",
        parse=parse_signal_name, metavar="SIG", from_chart=True,
    )  # fmt: skip
    readiness_until: str = option(
        "--sidecar-readiness", "t0",
        "t0: the sidecar's readiness fails at t0 (its /readyz); stop: the pod stays Ready until the app's "
        "stop (a probe of the app's port), to measure the EndpointSlice serving condition's fallback",
        parse=_readiness_until, choices=READINESS_UNTIL, from_chart=True,
    )  # fmt: skip
    warm_up_seconds: float | None = option(
        "--warm-up",
        None,
        "seconds the old pods serve under load before the first deletion [default: with an auto hold, its "
        "maximum (--prestop-delay-max, or the chart's or manifest's), so the arrivals it judges quiet by behave "
        "as a long-running pod's: a gap that long sets the window to the maximum, as over the sidecar's 120 s "
        "lookback; with a fixed hold, which reads no history, 1]",
        parse=parse_seconds,
        metavar="S",
    )
    request_timeout_seconds: float = option(
        "--request-timeout", "5", "a request slower than this failed", parse=parse_positive_seconds, metavar="S"
    )
    seed: int = option("--seed", "1", "seed for the propagation spread", parse=_count(0, 2**31 - 1), metavar="N")
    chart: Path | None = option(  # noqa: RUF009
        "--chart",
        None,
        "take the workload (replicas, strategy, grace period, hooks, probes, sidecar flags) from this Helm chart",
        parse=Path,
        metavar="DIR",
    )
    values: Path | None = option("--values", None, "values file for --chart", parse=Path, metavar="FILE")  # noqa: RUF009
    manifest: str | None = option(
        "--manifest",
        None,
        "take the pod, replicas and update strategy from this Deployment, StatefulSet or DaemonSet (- for stdin)",
        parse=str,
        metavar="FILE",
    )
    logs: Path | None = option(  # noqa: RUF009
        "--logs", None, "keep every container's log and termination log here", parse=Path, metavar="DIR"
    )
    json: bool = switch("--json", "print one JSON object (verdict, requests, pods) on stdout")
    html: Path | None = option(  # noqa: RUF009
        "--html",
        None,
        "also write the rollout as one self-contained HTML page here: the verdict, one lane per pod, "
        "requests over time (open it in any browser; it fetches nothing)",
        parse=_page_path,
        metavar="FILE",
    )
    app: str = option(
        "--app",
        "demo",
        "the built-in app when no APP CMD is given: demo (standard library) or asgi (uvicorn + Starlette "
        "with sidecar.integrations' SidecarMiddleware)",
        parse=str,
        choices=BUILT_IN_APPS,
    )
    # Not a flag: what follows `--` (app_command_of).
    app_command: tuple[str, ...]

    @property
    def hold_rule(self) -> HoldRule | None:
        """The auto hold's bounds, or None for a fixed --prestop-delay."""
        if self.prestop_delay_seconds is not None:
            return None
        return dataclasses.replace(
            DEFAULT_HOLD_RULE, maximum_seconds=self.prestop_delay_max_seconds, evidence=self.prestop_evidence
        )

    @property
    def budget(self) -> Budget:
        delay = self.prestop_delay_seconds
        held = self.prestop_delay_max_seconds if delay is None else delay  # auto: budgeted at its maximum
        return Budget(self.grace_period_seconds, held, REPORT_RESERVE_SECONDS)

    @property
    def strategy(self) -> Strategy:
        return Strategy(self.kind, self.strategy_type, self.max_surge, self.max_unavailable, self.min_ready_seconds)


@dataclasses.dataclass(frozen=True)
class OptionSpec:
    """What an Options field's declaration says, in the form the parser needs."""

    name: str
    flag: str
    default: str | None
    help: str
    parse: Callable[[str], object] | None  # None: a switch
    metavar: str | None = None
    choices: tuple[str, ...] = ()
    from_chart: bool = False

    @property
    def dest(self) -> str:
        return DEST_PREFIX + self.name

    def value(self, given: str | None) -> object:
        """The value from the flag's text (None when not given), or from its default. Raises
        SettingsError naming the flag."""
        if self.parse is None:
            return bool(given)
        text = self.default if given is None else given
        if text is None:
            return None
        try:
            return self.parse(text)
        except ValueError as exc:
            raise SettingsError(self.flag, str(exc)) from None


def option_specs() -> Iterator[OptionSpec]:
    for field in dataclasses.fields(Options):
        if field.metadata:
            yield OptionSpec(field.name, **field.metadata)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    for spec in option_specs():
        if spec.parse is None:
            parser.add_argument(spec.flag, dest=spec.dest, action="store_true", default=None, help=spec.help)
            continue
        shown = "" if spec.default is None else f" [default {spec.default}]"
        parser.add_argument(
            spec.flag,
            dest=spec.dest,
            metavar=spec.metavar,
            choices=spec.choices or None,
            default=None,  # None = not given: --chart must tell a flag given from its default
            help=spec.help + shown,
        )
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- APP CMD [ARGS...] (default: the demo app)")


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
    specs = list(option_specs())
    given: dict[str, str | None] = {spec.name: getattr(args, spec.dest) for spec in specs}
    if given["manifest"] is not None:
        if given["chart"] is not None:
            raise SettingsError("--manifest", "conflicts with --chart: give one of them")
        for spec in specs:
            if (spec.from_chart or spec.name in FROM_MANIFEST) and given[spec.name] is not None:
                raise SettingsError(spec.flag, "comes from the manifest with --manifest; set it there")
    if given["chart"] is not None:
        for spec in specs:
            if (spec.from_chart or spec.name in FROM_MANIFEST) and given[spec.name] is not None:
                raise SettingsError(
                    spec.flag, "comes from the chart with --chart; set it in the chart's values (--values)"
                )
    elif given["values"] is not None:
        raise SettingsError("--values", "only with --chart")
    values = {spec.name: spec.value(given[spec.name]) for spec in specs}
    app_command = app_command_of(args.command)
    if values["app"] == "asgi":
        if args.command:
            raise SettingsError("--app", "asgi is a built-in app: give it or an APP CMD, not both")
        app_command = (sys.executable, "-m", "sidecar.simulate.asgi_app", "--port", PORT_PLACEHOLDER)
    options = Options(**values, app_command=app_command)  # type: ignore[arg-type]
    problem = budget_problem(options.budget, options.hold_rule)
    if problem is not None:
        raise SettingsError("--grace-period", problem)
    problem = options.strategy.problem()
    if problem is not None:
        raise SettingsError("--kind", problem)
    return options
