"""What the simulated kubelet runs: a pod template cut down to what termination depends on —
each container's command, preStop hook and probes, and the grace period. Built from the flags
(`template_for_mode`) or from a rendered Helm chart (sidecar.simulate.chart). Data only."""

from __future__ import annotations

import dataclasses
import enum
import signal
import sys
from collections.abc import Mapping, Sequence
from typing import Final

from sidecar.deadline import Budget
from sidecar.hold_rule import HoldRule

# Each simulated pod gets its own loopback address (127.0.0.2, .3, ...: all of 127/8 is local on
# Linux), as each real pod gets its own IP, and its own ports (unique in the run, so that an app
# binding 0.0.0.0 cannot take another pod's). Templates name the ports symbolically; commands carry
# them, and the pod's address, as these placeholders, replaced per pod.
APP_PORT: Final = "app"
ADMIN_PORT: Final = "admin"
PORT_PLACEHOLDER: Final = "{port}"  # the app's port, in the user's APP CMD
HOST_PLACEHOLDER: Final = "{host}"  # the pod's address (its pod IP), in commands; $HOST for the app
HOST_ENV: Final = "HOST"
ADMIN_PORT_PLACEHOLDER: Final = "{admin_port}"
TERMINATION_LOG_PLACEHOLDER: Final = "{termination_log}"
POD_NAME_PLACEHOLDER: Final = "{pod_name}"  # in env values: the downward API's metadata.name
# The pod's own sidecar (http://<the pod's address>:<its admin port>; empty without one), in the app's
# arguments; the app container also gets it as SIDECAR_URL_ENV, where apps look for GET /events.
SIDECAR_PLACEHOLDER: Final = "{sidecar}"
# The PID of the pod's app container's main process (started before it: a classic sidecar comes
# after the app), for a sidecar that watches the app's process. In a cluster that takes
# shareProcessNamespace and --watch-process; here every process shares this machine's PID namespace
# and a pattern could match another pod's app, so the sidecar is given the PID.
APP_PID_PLACEHOLDER: Final = "{app_pid}"
SIDECAR_URL_ENV: Final = "SHUTDOWN_SIDECAR_URL"

# A Kubernetes probe's defaults (core/v1 Probe).
PROBE_DEFAULT_PERIOD_SECONDS: Final = 10.0
PROBE_DEFAULT_TIMEOUT_SECONDS: Final = 1.0
PROBE_DEFAULT_FAILURE_THRESHOLD: Final = 3


class Mode(enum.Enum):
    """Where the sidecar sits in the pod; NONE is the same pod without it: the baseline."""

    NATIVE = "native"
    CLASSIC = "classic"
    RUN = "run"
    NONE = "none"


@dataclasses.dataclass(frozen=True)
class HttpGet:
    port: str  # APP_PORT or ADMIN_PORT
    path: str
    headers: tuple[tuple[str, str], ...] = ()
    # Why the kubelet cannot even send it (a port name that is not one of the container's own):
    # a hook that fails at every run, as in a cluster; probes are never built with one.
    error: str | None = None


@dataclasses.dataclass(frozen=True)
class ExecHook:
    # Run on this machine (not in an image): built only when command[0] is found here.
    command: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class TcpSocket:
    port: str


@dataclasses.dataclass(frozen=True)
class Probe:
    action: HttpGet | TcpSocket
    period_seconds: float = PROBE_DEFAULT_PERIOD_SECONDS
    timeout_seconds: float = PROBE_DEFAULT_TIMEOUT_SECONDS
    success_threshold: int = 1
    failure_threshold: int = PROBE_DEFAULT_FAILURE_THRESHOLD
    initial_delay_seconds: float = 0.0


@dataclasses.dataclass(frozen=True)
class ContainerSpec:
    name: str
    argv: tuple[str, ...]  # may hold the placeholders above
    env: Mapping[str, str] = dataclasses.field(default_factory=dict)  # values may hold them too
    pre_stop: HttpGet | ExecHook | None = None
    readiness: Probe | None = None
    startup: Probe | None = None
    serves_traffic: bool = False  # owns the app port: its exit is the drain's end as the kubelet sees it
    reports: bool = False  # a sidecar: its termination log is the pod's final report
    # What the kubelet's runtime sends after the preStop hook: the container's lifecycle.stopSignal
    # (KEP-4960, alpha in 1.33), else the image's STOPSIGNAL, else SIGTERM.
    stop_signal: signal.Signals = signal.SIGTERM


@dataclasses.dataclass(frozen=True)
class PodTemplate:
    mode: Mode
    grace_period_seconds: float
    # Native sidecars (restartPolicy: Always init containers): started first, each waited for
    # until its startup probe passes, and stopped only after every container below has exited.
    sidecars: tuple[ContainerSpec, ...]
    containers: tuple[ContainerSpec, ...]

    @property
    def all_containers(self) -> tuple[ContainerSpec, ...]:
        return (*self.sidecars, *self.containers)


def demo_app_command() -> tuple[str, ...]:
    """The built-in demo app (sidecar.simulate.demo_app): drains at SIGTERM, 50 ms per request. Run
    by its alias sidecar.demo, the command --json has always shown in its settings."""
    return (sys.executable, "-m", "sidecar.demo", "--port", PORT_PLACEHOLDER)


def prestop_delay_flags(budget: Budget, hold: HoldRule | None) -> tuple[str, ...]:
    """--prestop-delay as a number, or auto with the hold's bounds (budgeted at its maximum)."""
    if hold is None:
        return (f"--prestop-delay={budget.prestop_delay_seconds:g}",)
    return (
        "--prestop-delay=auto",
        f"--prestop-delay-min={hold.minimum_seconds:g}",
        f"--prestop-delay-max={hold.maximum_seconds:g}",
        f"--prestop-quiet-confidence={hold.confidence:g}",
        f"--prestop-evidence={hold.evidence}",
    )


def sidecar_command(subcommand: str, budget: Budget, *extra: str, hold: HoldRule | None = None) -> tuple[str, ...]:
    return (
        sys.executable,
        "-m",
        "sidecar",
        subcommand,
        # The pod's address: the kubelet's hooks and probes come to the pod IP (0.0.0.0, the
        # sidecar's default, would do too but also listen on every other address of this machine).
        f"--host={HOST_PLACEHOLDER}",
        f"--port={ADMIN_PORT_PLACEHOLDER}",
        f"--grace-period={budget.grace_period_seconds:g}",
        *prestop_delay_flags(budget, hold),
        f"--report-reserve={budget.report_reserve_seconds:g}",
        f"--app-port={PORT_PLACEHOLDER}",
        f"--termination-log={TERMINATION_LOG_PLACEHOLDER}",
        *extra,
    )


# The pod the chart deploys, with its default probes: the app container has none of its own (the
# sidecar's readiness waits for the app's listener). Without the sidecar, the app gets a TCP
# readiness probe, so the baseline differs from it in the shutdown alone.
SIDECAR_READINESS: Final = Probe(HttpGet(ADMIN_PORT, "/readyz"), period_seconds=1, failure_threshold=1)
SIDECAR_STARTUP: Final = Probe(HttpGet(ADMIN_PORT, "/startupz"), period_seconds=1, failure_threshold=30)
APP_READINESS: Final = Probe(TcpSocket(APP_PORT), period_seconds=1, failure_threshold=1)
PRESTOP_HOOK: Final = HttpGet(ADMIN_PORT, "/prestop")


def template_for_mode(
    mode: Mode,
    budget: Budget,
    app_command: Sequence[str],
    *,
    stop_signal: signal.Signals = signal.SIGTERM,
    readiness_until_stop: bool = False,
    hold: HoldRule | None = None,
) -> PodTemplate:
    """The pod for `--mode`: the app with the sidecar as the chart wires it, or without it. The
    app container gets `stop_signal` (run mode: the wrapper gets it and passes it on as its
    --stop-signal). `readiness_until_stop`: the pod's readiness is a probe of the app's port
    instead of the sidecar's /readyz, so it stays Ready until the app stops listening."""
    app = ContainerSpec("app", tuple(app_command), serves_traffic=True, stop_signal=stop_signal)
    grace = budget.grace_period_seconds
    sidecar_readiness = APP_READINESS if readiness_until_stop else SIDECAR_READINESS
    if mode is Mode.NONE:
        # No hook: the app gets its SIGTERM the moment the pod is deleted.
        return PodTemplate(mode, grace, (), (dataclasses.replace(app, readiness=APP_READINESS),))
    if mode is Mode.RUN:
        wrapper = ContainerSpec(
            "app",
            (*sidecar_command("run", budget, f"--stop-signal={stop_signal.name}", hold=hold), "--", *app_command),
            pre_stop=PRESTOP_HOOK,
            readiness=sidecar_readiness,  # in run mode /readyz also checks the app and its port
            serves_traffic=True,
            reports=True,
            stop_signal=stop_signal,
        )
        return PodTemplate(mode, grace, (), (wrapper,))
    app = dataclasses.replace(app, pre_stop=PRESTOP_HOOK)
    native = mode is Mode.NATIVE
    # As the chart wires a classic sidecar: watching the app's process (shareProcessNamespace), so
    # the drain ends at the app's exit, not at its listener's closing.
    mode_flag = "--native-sidecar=true" if native else f"--watch-pid={APP_PID_PLACEHOLDER}"
    sidecar = ContainerSpec(
        "shutdown-sidecar",
        sidecar_command("serve", budget, mode_flag, hold=hold),
        readiness=sidecar_readiness,
        startup=SIDECAR_STARTUP,
        reports=True,
    )
    if native:
        return PodTemplate(mode, grace, (sidecar,), (app,))
    return PodTemplate(mode, grace, (), (app, sidecar))


def substitute(argv: Sequence[str], values: Mapping[str, str]) -> list[str]:
    """Fill the placeholders in a command. Plain replacement, not str.format: a user's argument
    may hold other braces (JSON, shell)."""
    filled = []
    for arg in argv:
        filled_arg = arg
        for placeholder, value in values.items():
            filled_arg = filled_arg.replace(placeholder, value)
        filled.append(filled_arg)
    return filled


def filled_command(spec: ContainerSpec, values: Mapping[str, str]) -> tuple[list[str], dict[str, str]]:
    """The container's argv and environment with the placeholders filled in; the container that
    serves traffic also gets the app's port as $PORT, the pod's address as $HOST and, in a pod
    with a sidecar, the sidecar's URL as $SHUTDOWN_SIDECAR_URL (a run-mode wrapper passes them on
    to the app it starts)."""
    env = {name: substitute([value], values)[0] for name, value in spec.env.items()}
    if spec.serves_traffic:
        env["PORT"] = values[PORT_PLACEHOLDER]
        if HOST_PLACEHOLDER in values:
            env[HOST_ENV] = values[HOST_PLACEHOLDER]
        # Over whatever the chart says (it would name 127.0.0.1:9180): here each pod's sidecar
        # has its own port.
        if values.get(SIDECAR_PLACEHOLDER):
            env[SIDECAR_URL_ENV] = values[SIDECAR_PLACEHOLDER]
        else:
            env.pop(SIDECAR_URL_ENV, None)
    return substitute(spec.argv, values), env
