"""`simulate --chart`: a rendered chart's workload cut down to the PodTemplate the simulated
kubelet runs (rendering itself is sidecar.simulate.helm). It runs nothing, and does not guess:
what it cannot rehearse faithfully is a ChartError naming the flag to fix."""

from __future__ import annotations

import base64
import binascii
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from sidecar.simulate.helm import NAMESPACE, ChartError, render_chart
from sidecar.simulate.podspec import (
    ADMIN_PORT,
    ADMIN_PORT_PLACEHOLDER,
    APP_PORT,
    POD_NAME_PLACEHOLDER,
    PORT_PLACEHOLDER,
    PROBE_DEFAULT_FAILURE_THRESHOLD,
    PROBE_DEFAULT_PERIOD_SECONDS,
    PROBE_DEFAULT_TIMEOUT_SECONDS,
    TERMINATION_LOG_PLACEHOLDER,
    ContainerSpec,
    HttpGet,
    Mode,
    PodTemplate,
    Probe,
    TcpSocket,
)

WORKLOAD_KINDS: Final = ("Deployment", "StatefulSet", "DaemonSet")
DEFAULT_GRACE_SECONDS: Final = 30.0  # core/v1 PodSpec.terminationGracePeriodSeconds
SIDECAR_NAME: Final = "shutdown-sidecar"
ENTRYPOINT: Final = "shutdown-sidecar"  # the image's ENTRYPOINT, by its file name
IMAGE_CMD: Final = ("serve",)  # the image's CMD: what runs when a container sets neither command nor args
SUBCOMMANDS: Final = ("serve", "run")
DEFAULT_ADMIN_PORT: Final = 9180

# The settings that name this pod's addresses and files. On one machine every simulated pod needs its
# own loopback ports and termination log, so their chart values are replaced (in both the flag and
# the SIDECAR_* variable); the sidecar's defaults would clash between pods, hence ADDED_FLAGS.
REWRITTEN_FLAGS: Final = {
    "--host": "127.0.0.1",
    "--port": ADMIN_PORT_PLACEHOLDER,
    "--app-port": PORT_PLACEHOLDER,
    "--termination-log": TERMINATION_LOG_PLACEHOLDER,
}
ADDED_FLAGS: Final = ("--host", "--port", "--termination-log")
REWRITTEN_ENV: Final = {"SIDECAR_" + flag[2:].upper().replace("-", "_"): v for flag, v in REWRITTEN_FLAGS.items()}

# The downward API fields a local pod can answer; other fieldRefs are left out of the environment.
FIELD_VALUES: Final = {
    "metadata.name": POD_NAME_PLACEHOLDER,
    "metadata.namespace": NAMESPACE,
    "spec.nodeName": "localhost",
}

Secrets = Mapping[tuple[str, str], str]  # (Secret name, key) -> value, from the rendered Secrets


def load_chart_template(chart_dir: Path, values_file: Path | None, app_command: Sequence[str]) -> PodTemplate:
    return template_from_manifests(render_chart(chart_dir, values_file), app_command)


def template_from_manifests(objects: list[dict[str, Any]], app_command: Sequence[str]) -> PodTemplate:
    """The first Deployment/StatefulSet/DaemonSet's pod template, as the simulator runs it.

    The sidecar is the container named shutdown-sidecar, else the first whose arguments start with
    serve or run: a restartable init container is a native sidecar, a container a classic one, and
    `run` makes it the app's wrapper (Mode.RUN); without one, the pod is the baseline (Mode.NONE).
    Exactly one other container is the app, run as `app_command` (its image cannot run here).
    Init containers that are not restartable are left out: they finish before the pod can be
    ready and take no part in its termination. Raises ChartError for what cannot be rehearsed.
    """
    workload = next((obj for obj in objects if obj.get("kind") in WORKLOAD_KINDS), None)
    if workload is None:
        raise ChartError("--chart: the chart renders no Deployment, StatefulSet or DaemonSet")
    spec = ((workload.get("spec") or {}).get("template") or {}).get("spec") or {}
    grace = spec.get("terminationGracePeriodSeconds")
    grace_seconds = DEFAULT_GRACE_SECONDS if grace is None else float(grace)
    native = [c for c in spec.get("initContainers") or [] if c.get("restartPolicy") == "Always"]
    containers = list(spec.get("containers") or [])
    sidecar = _find_sidecar([*native, *containers])
    others = [c for c in (*native, *containers) if c is not sidecar]
    secrets = _secrets(objects)
    if sidecar is None:
        app = _only_app(others, containers)
        ports = _ports_of(app, APP_PORT)
        return PodTemplate(Mode.NONE, grace_seconds, (), (_app_spec(app, app_command, ports, secrets),))

    head, tail, settings = _rewrite_flags(_sidecar_arguments(sidecar))
    env = _env(sidecar, secrets)
    admin_port = _port_number(settings.get("--port", env.get("SIDECAR_PORT"))) or DEFAULT_ADMIN_PORT
    app_port = _port_number(settings.get("--app-port", env.get("SIDECAR_APP_PORT")))
    env.update((key, value) for key, value in REWRITTEN_ENV.items() if key in env)
    argv = (sys.executable, "-m", "sidecar", *head)
    name = str(sidecar.get("name"))

    if head[0] == "run":
        # The wrapper is the app's entrypoint: one container, whose ports are the app's but for the
        # admin port; what follows `--` is the app's command, replaced by the user's.
        if others or any(c is sidecar for c in native):
            names = ", ".join(str(c.get("name")) for c in (sidecar, *others))
            raise ChartError(
                f"--chart: {name} runs `run`, which wraps the app in its own container; the pod has {names}"
            )
        ports = {**_ports_of(sidecar, APP_PORT, admin_port), admin_port: ADMIN_PORT}
        wrapper = _container_spec(sidecar, (*argv, "--", *app_command), env, ports, serves_traffic=True, reports=True)
        return PodTemplate(Mode.RUN, grace_seconds, (), (wrapper,))

    app = _only_app(others, containers)
    # One map for the pod: its containers share a network namespace, and the app's preStop hook
    # calls the sidecar's port by number.
    ports = {**_ports_of(app, APP_PORT), **_ports_of(sidecar, ADMIN_PORT), admin_port: ADMIN_PORT}
    if app_port is not None:
        ports.setdefault(app_port, APP_PORT)
    app_spec = _app_spec(app, app_command, ports, secrets)
    sidecar_spec = _container_spec(sidecar, (*argv, *tail), env, ports, reports=True)
    if any(c is sidecar for c in native):
        return PodTemplate(Mode.NATIVE, grace_seconds, (sidecar_spec,), (app_spec,))
    return PodTemplate(Mode.CLASSIC, grace_seconds, (), (app_spec, sidecar_spec))


def _find_sidecar(candidates: list[dict[str, Any]]) -> dict[str, Any] | None:
    named = [c for c in candidates if c.get("name") == SIDECAR_NAME]
    if named:
        return named[0]
    return next((c for c in candidates if (_entrypoint_arguments(c) or [""])[0] in SUBCOMMANDS), None)


def _entrypoint_arguments(container: Mapping[str, Any]) -> list[str] | None:
    """What follows the sidecar's entrypoint, or None when the container runs another program.
    Kubernetes: `args` alone replace the image's CMD; `command` replaces its ENTRYPOINT."""
    command = [str(word) for word in container.get("command") or []]
    args = [str(word) for word in container.get("args") or []]
    if command and Path(command[0]).name != ENTRYPOINT:
        return None
    return [*command[1:], *args]


def _sidecar_arguments(container: Mapping[str, Any]) -> list[str]:
    name = container.get("name")
    arguments = _entrypoint_arguments(container)
    if arguments is None:
        raise ChartError(
            f"--chart: container {name}: command {container['command']} is not the {ENTRYPOINT} entrypoint"
        )
    if not arguments and "command" not in container and "args" not in container:
        arguments = list(IMAGE_CMD)
    if not arguments or arguments[0] not in SUBCOMMANDS:
        raise ChartError(f"--chart: container {name}: arguments {arguments} do not start with serve or run")
    return arguments


def _rewrite_flags(arguments: Sequence[str]) -> tuple[list[str], list[str], dict[str, str]]:
    """(subcommand and flags with REWRITTEN_FLAGS replaced, what follows `--`, the replaced values).
    Both `--flag=value` and `--flag value` are read; every other argument is kept as it is."""
    subcommand, *rest = arguments
    flags: list[str] = []
    replaced: dict[str, str] = {}
    index = 0
    while index < len(rest) and rest[index] != "--":
        flag, has_value, value = rest[index].partition("=")
        if flag in REWRITTEN_FLAGS:
            if not has_value and index + 1 < len(rest):
                index += 1
                value = rest[index]
            replaced[flag] = value
            flags.append(f"{flag}={REWRITTEN_FLAGS[flag]}")
        else:
            flags.append(rest[index])
        index += 1
    added = [f"{flag}={REWRITTEN_FLAGS[flag]}" for flag in ADDED_FLAGS if flag not in replaced]
    return [subcommand, *added, *flags], rest[index:], replaced


def _only_app(others: list[dict[str, Any]], containers: list[dict[str, Any]]) -> dict[str, Any]:
    if len(others) != 1 or not any(c is others[0] for c in containers):
        names = ", ".join(str(c.get("name")) for c in others) or "none"
        raise ChartError(f"--chart: the simulator runs one app container besides the sidecar; the pod has: {names}")
    return others[0]


def _app_spec(
    app: Mapping[str, Any], app_command: Sequence[str], ports: Mapping[int | str, str], secrets: Secrets
) -> ContainerSpec:
    # The user's environment gets what the chart gives the app, as the app in the pod would.
    return _container_spec(app, tuple(app_command), _env(app, secrets), ports, serves_traffic=True)


def _container_spec(
    container: Mapping[str, Any],
    argv: tuple[str, ...],
    env: Mapping[str, str],
    ports: Mapping[int | str, str],
    *,
    serves_traffic: bool = False,
    reports: bool = False,
) -> ContainerSpec:
    name = str(container.get("name"))
    hook = (container.get("lifecycle") or {}).get("preStop")
    pre_stop = None
    if hook:
        if "httpGet" not in hook:
            raise ChartError(
                f"--chart: container {name}: a preStop {', '.join(hook)} hook; only httpGet hooks are simulated"
            )
        pre_stop = _http_get(hook["httpGet"], ports, f"container {name} preStop")
    # livenessProbe is left out: a rehearsal of termination, and a liveness restart is not part of
    # what a rollout or a pod deletion does.
    return ContainerSpec(
        name,
        argv,
        env=env,
        pre_stop=pre_stop,
        readiness=_probe(container, "readinessProbe", ports),
        startup=_probe(container, "startupProbe", ports),
        serves_traffic=serves_traffic,
        reports=reports,
    )


def _probe(container: Mapping[str, Any], field: str, ports: Mapping[int | str, str]) -> Probe | None:
    spec = container.get(field)
    if not spec:
        return None
    where = f"container {container.get('name')} {field}"
    action: HttpGet | TcpSocket
    if "httpGet" in spec:
        action = _http_get(spec["httpGet"], ports, where)
    elif "tcpSocket" in spec:
        action = TcpSocket(_resolve_port(spec["tcpSocket"].get("port"), ports, where))
    else:
        raise ChartError(f"--chart: {where}: only httpGet and tcpSocket probes are simulated")
    return Probe(
        action,
        period_seconds=float(spec.get("periodSeconds", PROBE_DEFAULT_PERIOD_SECONDS)),
        timeout_seconds=float(spec.get("timeoutSeconds", PROBE_DEFAULT_TIMEOUT_SECONDS)),
        success_threshold=int(spec.get("successThreshold", 1)),
        failure_threshold=int(spec.get("failureThreshold", PROBE_DEFAULT_FAILURE_THRESHOLD)),
        initial_delay_seconds=float(spec.get("initialDelaySeconds", 0)),
    )


def _http_get(action: Mapping[str, Any], ports: Mapping[int | str, str], where: str) -> HttpGet:
    if str(action.get("scheme", "HTTP")).upper() != "HTTP":
        raise ChartError(f"--chart: {where}: scheme {action['scheme']}; only HTTP is simulated")
    headers = tuple((str(h.get("name")), str(h.get("value", ""))) for h in action.get("httpHeaders") or [])
    return HttpGet(_resolve_port(action.get("port"), ports, where), str(action.get("path") or "/"), headers)


def _resolve_port(port: Any, ports: Mapping[int | str, str], where: str) -> str:
    symbol = ports.get(_port_key(port))
    if symbol is None:
        known = ", ".join(sorted(str(key) for key in ports)) or "none"
        raise ChartError(f"--chart: {where}: port {port!r} is not a port of the pod's containers ({known})")
    return symbol


def _ports_of(container: Mapping[str, Any], symbol: str, admin_port: int | None = None) -> dict[int | str, str]:
    """Each declared port, by name and by number, as `symbol`; `admin_port` as ADMIN_PORT."""
    ports: dict[int | str, str] = {}
    for port in container.get("ports") or []:
        number = _port_number(port.get("containerPort"))
        owner = ADMIN_PORT if number is not None and number == admin_port else symbol
        if number is not None:
            ports[number] = owner
        if port.get("name"):
            ports[str(port["name"])] = owner
    return ports


def _port_key(port: Any) -> int | str:
    number = _port_number(port)
    return str(port) if number is None else number


def _port_number(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def _secrets(objects: list[dict[str, Any]]) -> dict[tuple[str, str], str]:
    values: dict[tuple[str, str], str] = {}
    for obj in objects:
        if obj.get("kind") != "Secret":
            continue
        name = str((obj.get("metadata") or {}).get("name"))
        for key, encoded in (obj.get("data") or {}).items():
            try:
                values[name, str(key)] = base64.b64decode(str(encoded), validate=True).decode("utf-8", "replace")
            except binascii.Error:
                raise ChartError(f"--chart: Secret {name} key {key}: data is not base64") from None
        # stringData is merged over data, as the API server does.
        values.update(((name, str(key)), str(value)) for key, value in (obj.get("stringData") or {}).items())
    return values


def _env(container: Mapping[str, Any], secrets: Secrets) -> dict[str, str]:
    """Literal values, the downward API fields a local pod can answer, and the rendered Secrets'
    keys. configMapKeyRef, resourceFieldRef and envFrom are left out."""
    env: dict[str, str] = {}
    for item in container.get("env") or []:
        name = str(item.get("name"))
        source = item.get("valueFrom")
        if source is None:
            env[name] = str(item.get("value", ""))
        elif "fieldRef" in source:
            field = FIELD_VALUES.get(str(source["fieldRef"].get("fieldPath")))
            if field is not None:
                env[name] = field
        elif "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            value = secrets.get((str(ref.get("name")), str(ref.get("key"))))
            if value is not None:
                env[name] = value
            elif not ref.get("optional"):
                raise ChartError(
                    f"--chart: container {container.get('name')} env {name}: Secret {ref.get('name')} key "
                    f"{ref.get('key')} is not in the render (a Secret the chart does not create cannot be read here)"
                )
    return env
