"""The one settings table: each setting is declared once, and its flag, environment variable,
help text and validation are derived from that declaration. The only reader of os.environ.
It must not start anything: bad input becomes a SettingsError, and the caller exits 2."""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import os
import re
import signal
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Final, TypeVar
from urllib.parse import urlsplit

from sidecar.deadline import MAX_SECONDS, MIN_REPORT_RESERVE_SECONDS, Budget
from sidecar.hold_rule import DEFAULT_HOLD_RULE, EVIDENCE_MODES, HoldRule

ENV_PREFIX: Final = "SIDECAR_"
SECONDS_SUFFIX: Final = "_seconds"
DEFAULT_TERMINATION_LOG: Final = "/dev/termination-log"
LOG_FORMATS: Final = ("json", "text")
LOG_LEVELS: Final = ("debug", "info", "warning", "error")

T = TypeVar("T")

# Typed as optional so the setting's parser may return None (an empty value switches it off).
_DEFAULT_TERMINATION_LOG_VALUE: str | None = DEFAULT_TERMINATION_LOG
# None: auto, the hold ends on evidence. Issue #22's grid: auto dropped no request in any case where a
# fixed 5 s dropped none; at 6 +- 1 s propagation fixed 5 s dropped requests in 46 cases of 48, auto in
# 3 with 1 s warm-ups and none with old pods.
_DEFAULT_PRESTOP_DELAY: float | None = None


class SettingsError(ValueError):
    """A setting that cannot be used: `flag` names it, the message says why."""

    def __init__(self, flag: str, reason: str) -> None:
        super().__init__(f"{flag}: {reason}")
        self.flag = flag
        self.reason = reason


# --- parsers: text in, value out, ValueError with a reason otherwise -----------------------------


def parse_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"expected a number of seconds, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"expected a number of seconds >= 0, got {text!r}")
    if value > MAX_SECONDS:
        # Far past any grace period, and past what timers and sleeps can take (OverflowError).
        raise ValueError(f"expected at most {MAX_SECONDS} seconds (a week), got {text!r}")
    return value


def parse_positive_seconds(text: str) -> float:
    value = parse_seconds(text)
    if value == 0:
        raise ValueError("must be greater than 0")
    return value


def parse_prestop_delay(text: str) -> float | None:
    """Seconds, or `auto` (None): the hold then ends on observed quiet (sidecar.hold)."""
    if text.strip().lower() == "auto":
        return None
    try:
        return parse_seconds(text)
    except ValueError as exc:
        raise ValueError(f"{exc}, or auto") from None


def parse_confidence(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"expected a probability between 0 and 1, got {text!r}") from None
    if not 0 < value < 1:
        raise ValueError(f"expected a probability strictly between 0 and 1 (e.g. 0.999), got {text!r}")
    return value


def parse_report_reserve(text: str) -> float:
    value = parse_seconds(text)
    if value < MIN_REPORT_RESERVE_SECONDS:
        raise ValueError(
            f"must be at least {MIN_REPORT_RESERVE_SECONDS:g} s: the final report is written in this time, "
            f"and with less the watchdog ends the process at the deadline before it is written (got {text!r})"
        )
    return value


def parse_int(text: str, low: int, high: int, what: str) -> int:
    """Digits only: int() would also take '+80', ' 80' and '8_0'."""
    if not text.isascii() or not text.isdigit():
        raise ValueError(f"expected {what}, got {text!r}")
    value = int(text)
    if not low <= value <= high:
        raise ValueError(f"expected {what} from {low} to {high}, got {value}")
    return value


def parse_listen_port(text: str) -> int:
    # 0 asks the kernel for a free port (tests, local runs); the bound port is logged.
    return parse_int(text, 0, 65535, "a port number")


def parse_app_port(text: str) -> int:
    return parse_int(text, 1, 65535, "a port number")


def parse_pid(text: str) -> int:
    return parse_int(text, 1, 2**22, "a process id")


def parse_host(text: str) -> str:
    if not text:
        raise ValueError("must not be empty")
    try:
        ipaddress.ip_address(text)
    except ValueError:
        if text != "localhost":
            raise ValueError(f"expected an IP address (0.0.0.0, ::, 127.0.0.1) or localhost, got {text!r}") from None
    return text


def parse_ip_address(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        raise ValueError(f"expected an IP address, got {text!r}") from None


def parse_nonempty(text: str) -> str:
    if not text.strip():
        raise ValueError("must not be empty")
    return text


def parse_admin_token(text: str) -> str:
    # HTTP carries header values as bytes, decoded as latin-1; a token outside printable ASCII
    # could never match what a client sends (and would not survive every client's encoding).
    if not text or not all(" " < char <= "~" for char in text):
        raise ValueError("must be printable ASCII without spaces (a bearer token)")
    return text


def parse_pattern(text: str) -> str:
    """A regular expression, compiled here so a bad one fails at start rather than at t0."""
    parse_nonempty(text)
    try:
        re.compile(text)
    except re.error as exc:
        raise ValueError(f"not a regular expression: {exc}") from None
    return text


def parse_optional_path(text: str) -> str | None:
    # An empty value switches the termination log off.
    return text or None


def parse_http_url(text: str) -> str:
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"expected an http:// or https:// URL, got {text!r}")
    return text.rstrip("/")


def parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {text!r}")


def parse_signal_name(text: str) -> str:
    name = text.strip().upper()
    name = name if name.startswith("SIG") else "SIG" + name
    if name not in signal.Signals.__members__ or name in ("SIGKILL", "SIGSTOP"):
        raise ValueError(f"expected a signal name such as SIGTERM or SIGQUIT, got {text!r}")
    return name


def one_of(*choices: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        value = text.lower()
        if value not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}, got {text!r}")
        return value

    return parse


# --- the table -----------------------------------------------------------------------------------


def setting(
    default: T, help: str, *, parse: Callable[[str], T], metavar: str, secret: bool = False, shown: str | None = None
) -> T:
    """Declare a setting. Typed as its default so the dataclass field keeps its type for mypy.
    `shown`: the default as --help gives it, when None does not mean "none" (auto)."""
    metadata = {"help": help, "parse": parse, "metavar": metavar, "secret": secret, "shown": shown}
    field: Any = dataclasses.field(default=default, repr=not secret, metadata=metadata)
    return field  # type: ignore[no-any-return]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Settings:
    host: str = setting(
        "::",
        "admin server address; kubelet probes come from the node. '::' listens on IPv6 and IPv4 (one "
        "dual-stack socket; IPv4 only where the kernel has no IPv6), 0.0.0.0 on IPv4 only",
        parse=parse_host,
        metavar="ADDR",
    )
    port: int = setting(9180, "admin server port (0: any free port)", parse=parse_listen_port, metavar="PORT")
    grace_period_seconds: float = setting(
        30.0, "seconds; must equal the pod's terminationGracePeriodSeconds", parse=parse_positive_seconds, metavar="S"
    )
    prestop_delay_seconds: float | None = setting(
        _DEFAULT_PRESTOP_DELAY,
        "seconds readiness fails before the app is told to stop, or auto: until new arrivals stop: "
        "new connections to --app-port, and the requests an app using sidecar.integrations reports it started "
        "(the quiet window comes from --prestop-evidence; bounded by --prestop-delay-min/-max; without "
        "--app-port every hold lasts --prestop-delay-max)",
        parse=parse_prestop_delay,
        metavar="S|auto",
        shown="auto",
    )
    prestop_delay_min_seconds: float = setting(
        DEFAULT_HOLD_RULE.minimum_seconds,
        "auto: the shortest hold, and the shortest quiet window",
        parse=parse_seconds,
        metavar="S",
    )
    prestop_delay_max_seconds: float = setting(
        DEFAULT_HOLD_RULE.maximum_seconds,
        "auto: the longest hold (traffic that never stops, or arrivals that cannot be counted); "
        "with --report-reserve it must fit in --grace-period",
        parse=parse_positive_seconds,
        metavar="S",
    )
    prestop_quiet_confidence: float = setting(
        DEFAULT_HOLD_RULE.confidence,
        "auto: how sure a quiet window must make us that the pod no longer receives traffic, at the "
        "arrival rate before t0 (window = ln(1/(1-confidence))/rate, and at least the longest quiet gap before t0)",
        parse=parse_confidence,
        metavar="P",
    )
    prestop_evidence: str = setting(
        DEFAULT_HOLD_RULE.evidence,
        "auto: what before t0 sets the quiet window. connections: new connections to --app-port, right "
        "behind a Service's ClusterIP (kube-proxy routes connections: a pooled client's requests say nothing "
        "about routing). requests: the requests the app reports through sidecar.integrations (else connections), "
        "right only when every client reaches the pod through a proxy that picks a pod per request (an ingress "
        "controller, a mesh). Either way, any new connection or reported request after t0 restarts the quiet window",
        parse=one_of(*EVIDENCE_MODES),
        metavar="MODE",
    )
    report_reserve_seconds: float = setting(
        1.0,
        f"seconds before the deadline kept for the final report (at least {MIN_REPORT_RESERVE_SECONDS:g})",
        parse=parse_report_reserve,
        metavar="S",
    )
    admin_token: str | None = setting(
        None,
        "when set, /prestop and /drain need 'Authorization: Bearer <token>' (prefer the environment variable)",
        parse=parse_admin_token,
        metavar="TOKEN",
        secret=True,
    )
    app_port: int | None = setting(
        None,
        "the app's port: readiness waits for its listener; its connections end the drain",
        parse=parse_app_port,
        metavar="PORT",
    )
    node_ip: str | None = setting(
        None,
        "the node's address: the kubelet's probes of the app port come from it and are not counted as "
        "traffic (default: HOST_IP, the downward API's status.hostIP)",
        parse=parse_ip_address,
        metavar="ADDR",
    )
    watch_pid: int | None = setting(None, "a PID to watch (shared process namespace)", parse=parse_pid, metavar="PID")
    watch_process: str | None = setting(
        None,
        "a command-line pattern (regular expression) to watch (shared process namespace)",
        parse=parse_pattern,
        metavar="PATTERN",
    )
    termination_log: str | None = setting(
        _DEFAULT_TERMINATION_LOG_VALUE,
        "where the final report is written, at most 4096 bytes (empty: nowhere); "
        "the default is used only when writable",
        parse=parse_optional_path,
        metavar="PATH",
    )
    linger_seconds: float = setting(
        0.0,
        "up to this many seconds after the report, serve until one /metrics scrape",
        parse=parse_seconds,
        metavar="S",
    )
    pushgateway_url: str | None = setting(
        None, "push the final metrics there, bounded by the time left", parse=parse_http_url, metavar="URL"
    )
    workload: str | None = setting(
        None,
        "the workload's name, for the Pushgateway grouping key (default: POD_NAME without its generated suffixes)",
        parse=parse_nonempty,
        metavar="NAME",
    )
    namespace: str | None = setting(
        None,
        "the pod's namespace, for the Pushgateway grouping key (default: POD_NAMESPACE)",
        parse=parse_nonempty,
        metavar="NAME",
    )
    stop_signal: str = setting(
        "SIGTERM", "run mode: the signal the app gets after the prestop delay", parse=parse_signal_name, metavar="SIG"
    )
    native_sidecar: bool = setting(
        False,
        "running as a Kubernetes native sidecar: a SIGTERM then means the app containers have exited",
        parse=parse_bool,
        metavar="BOOL",
    )
    log_format: str = setting("json", "json lines, or text for humans", parse=one_of(*LOG_FORMATS), metavar="FORMAT")
    log_level: str = setting("info", "debug, info, warning or error", parse=one_of(*LOG_LEVELS), metavar="LEVEL")

    @property
    def hold_rule(self) -> HoldRule | None:
        """The auto hold's bounds, or None for a fixed prestop delay."""
        if self.prestop_delay_seconds is not None:
            return None
        return HoldRule(
            self.prestop_delay_min_seconds,
            self.prestop_delay_max_seconds,
            self.prestop_quiet_confidence,
            self.prestop_evidence,
        )

    @property
    def budget(self) -> Budget:
        # An auto hold is budgeted at its maximum: the grace period must hold the longest hold.
        delay = self.prestop_delay_seconds
        return Budget(
            self.grace_period_seconds,
            self.prestop_delay_max_seconds if delay is None else delay,
            self.report_reserve_seconds,
        )


@dataclasses.dataclass(frozen=True)
class SettingSpec:
    """What a Settings field's declaration says, in the form the CLI needs."""

    name: str
    default: object
    help: str
    parse: Callable[[str], object]
    metavar: str
    secret: bool
    shown: str | None = None

    @property
    def shown_default(self) -> str:
        """The default as --help and the docs give it."""
        if self.shown is not None:
            return self.shown
        return "none" if self.default is None else str(self.default)

    @property
    def flag(self) -> str:
        # Time settings carry their unit in the field name (grace_period_seconds); the flag and
        # the environment variable keep the shorter names SPEC.md gives them (--grace-period).
        return "--" + self.name.removesuffix(SECONDS_SUFFIX).replace("_", "-")

    @property
    def env_var(self) -> str:
        return ENV_PREFIX + self.flag.removeprefix("--").replace("-", "_").upper()


def setting_specs() -> Iterator[SettingSpec]:
    for field in dataclasses.fields(Settings):
        meta = field.metadata
        yield SettingSpec(
            field.name, field.default, meta["help"], meta["parse"], meta["metavar"], meta["secret"], meta["shown"]
        )


def load_settings(flags: Mapping[str, str | None], environ: Mapping[str, str] | None = None) -> Settings:
    """Build Settings from flag values (None when absent) and the environment; flags win.

    Raises SettingsError naming the first bad setting; nothing is started here.
    """
    environ = os.environ if environ is None else environ
    values: dict[str, object] = {}
    for spec in setting_specs():
        flag_value = flags.get(spec.name)
        if flag_value is not None:
            raw, origin = flag_value, spec.flag
        elif spec.env_var in environ:
            raw, origin = environ[spec.env_var], f"{spec.flag} (from {spec.env_var})"
        else:
            continue
        try:
            values[spec.name] = spec.parse(raw)
        except ValueError as exc:
            raise SettingsError(origin, str(exc)) from None
    if "workload" not in values:
        values["workload"] = workload_of_pod(environ.get("POD_NAME", ""))
    values.setdefault("namespace", environ.get("POD_NAMESPACE") or None)
    if "node_ip" not in values and environ.get("HOST_IP"):
        try:
            values["node_ip"] = parse_ip_address(environ["HOST_IP"])
        except ValueError as exc:
            raise SettingsError("--node-ip (from HOST_IP)", str(exc)) from None
    settings = Settings(**values)  # type: ignore[arg-type]
    check_timing(settings)
    if "termination_log" not in values:
        settings = dataclasses.replace(settings, termination_log=default_termination_log())
    return settings


# A Deployment's pod is <workload>-<pod-template-hash>-<5 chars>, a StatefulSet's <workload>-<n>.
_GENERATED_SUFFIX = re.compile(r"(-[a-z0-9]{6,10})?-[a-z0-9]{5}$|-[0-9]+$")


def workload_of_pod(pod_name: str) -> str | None:
    """The workload a pod belongs to, from the suffixes Kubernetes generates for its name."""
    return _GENERATED_SUFFIX.sub("", pod_name) or None


@dataclasses.dataclass(frozen=True)
class TracingEnvironment:
    """What the OTEL_* and downward-API variables say about traces. The OpenTelemetry SDK reads
    its own OTEL_* variables too (endpoint, headers, resource); this decides only whether
    traces are on, and passes on the pod's identity."""

    enabled: bool
    k8s_attributes: dict[str, str]


_OTLP_ENDPOINT_VARS: Final = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
_DOWNWARD_API: Final = {"POD_NAME": "k8s.pod.name", "POD_NAMESPACE": "k8s.namespace.name", "NODE_NAME": "k8s.node.name"}


def load_tracing_environment(environ: Mapping[str, str] | None = None) -> TracingEnvironment:
    """Traces are off unless an OTLP exporter is configured; raises SettingsError for an
    exporter or protocol this build cannot send (only OTLP over HTTP/protobuf)."""
    environ = os.environ if environ is None else environ
    k8s = {attribute: environ[var] for var, attribute in _DOWNWARD_API.items() if environ.get(var)}
    exporter = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    disabled = environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"
    wanted = exporter == "otlp" or (not exporter and any(environ.get(var) for var in _OTLP_ENDPOINT_VARS))
    if disabled or exporter == "none" or not wanted:
        if exporter not in ("", "none", "otlp"):
            raise SettingsError("OTEL_TRACES_EXPORTER", f"only otlp or none are supported, got {exporter!r}")
        return TracingEnvironment(False, k8s)
    for var in ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"):
        protocol = environ.get(var)
        if protocol:
            if protocol != "http/protobuf":
                raise SettingsError(var, f"only http/protobuf is supported, got {protocol!r}")
            break
    return TracingEnvironment(True, k8s)


def check_timing(settings: Settings) -> None:
    rule = settings.hold_rule
    if rule is not None and (problem := rule.problem()) is not None:
        raise SettingsError("--prestop-delay-min", problem)
    problem = budget_problem(settings.budget, rule)
    if problem is not None:
        raise SettingsError("--prestop-delay" if rule is None else "--prestop-delay-max", problem)


def budget_problem(budget: Budget, rule: HoldRule | None) -> str | None:
    """Budget.problem, and for an auto hold (the default, so the flag may never have been given)
    what to change: a lower maximum when one above the shortest hold fits, else the grace period."""
    if rule is None:
        return budget.problem()
    problem = budget.problem("the auto hold's maximum")
    if problem is None:
        return None
    limit = budget.prestop_delay_limit_seconds
    if limit > rule.minimum_seconds:
        return f"{problem}: set --prestop-delay-max below {limit:g} s, or --prestop-delay N for a fixed hold"
    return f"{problem}: raise --grace-period, or set --prestop-delay N for a fixed hold"


def default_termination_log() -> str | None:
    # Kubernetes mounts /dev/termination-log in every container; elsewhere (a laptop, CI) it is
    # absent, and the report then goes to the log line alone.
    path = DEFAULT_TERMINATION_LOG
    return path if os.access(path, os.W_OK) else None
