"""One container of a rendered pod manifest as the podspec.ContainerSpec the simulated kubelet
runs: its preStop hook, probes, ports and environment (literal values, the downward API fields a
local pod can answer, the rendered Secrets). Reads the manifest only; what it cannot rehearse
faithfully is a ChartError."""

from __future__ import annotations

import base64
import binascii
import shutil
import signal
from collections.abc import Mapping
from typing import Any, Final

from sidecar.config import parse_signal_name
from sidecar.simulate.helm import NAMESPACE, ChartError
from sidecar.simulate.podspec import (
    ADMIN_PORT,
    HOST_PLACEHOLDER,
    POD_NAME_PLACEHOLDER,
    PROBE_DEFAULT_FAILURE_THRESHOLD,
    PROBE_DEFAULT_PERIOD_SECONDS,
    PROBE_DEFAULT_TIMEOUT_SECONDS,
    ContainerSpec,
    ExecHook,
    HttpGet,
    Probe,
    TcpSocket,
)

# The downward API fields a local pod can answer; other fieldRefs are left out of the environment.
FIELD_VALUES: Final = {
    "metadata.name": POD_NAME_PLACEHOLDER,
    "status.podIP": HOST_PLACEHOLDER,
    "metadata.namespace": NAMESPACE,
    "spec.nodeName": "localhost",
}

Secrets = Mapping[tuple[str, str], str]  # (Secret name, key) -> value, from the rendered Secrets


def container_spec(
    container: Mapping[str, Any],
    argv: tuple[str, ...],
    env: Mapping[str, str],
    ports: Mapping[int | str, str],
    *,
    serves_traffic: bool = False,
    reports: bool = False,
    field: str | None = None,
) -> ContainerSpec:
    """The container as the simulator runs it: `argv` and `env` in place of its image's, its preStop
    hook and probes with their ports resolved to `ports` (a port's name or number -> APP_PORT or
    ADMIN_PORT), its stop signal. `field`: where the container is in the manifest, for messages.
    Raises ChartError for a hook or probe the simulator cannot run."""
    name = str(container.get("name"))
    where = field or f"container {name}"
    lifecycle = container.get("lifecycle") or {}
    hook = lifecycle.get("preStop")
    pre_stop: HttpGet | ExecHook | None = None
    if hook and "exec" in hook:
        pre_stop = _exec_hook(hook["exec"], f"{where}.lifecycle.preStop.exec.command")
    elif hook:
        if "httpGet" not in hook:
            raise ChartError(
                f"--chart: container {name}: a preStop {', '.join(hook)} hook; only httpGet and exec are simulated"
            )
        pre_stop = _http_get(hook["httpGet"], ports, f"container {name} preStop", container, is_hook=True)
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
        stop_signal=_stop_signal(lifecycle.get("stopSignal"), f"{where}.lifecycle.stopSignal"),
    )


def _exec_hook(action: Mapping[str, Any], where: str) -> ExecHook:
    # An image's tools are not on this machine; a hook that cannot run here is not rehearsed at all.
    command = tuple(str(word) for word in action.get("command") or [])
    if not command:
        raise ChartError(f"--chart: {where}: empty")
    if shutil.which(command[0]) is None:
        raise ChartError(f"--chart: {where}: {command[0]} not found on this machine")
    return ExecHook(command)


def _stop_signal(value: Any, where: str) -> signal.Signals:
    # lifecycle.stopSignal (KEP-4960, alpha in 1.33); without it, the image's STOPSIGNAL, which
    # cannot be read here: SIGTERM, the runtime's default.
    if value is None:
        return signal.SIGTERM
    try:
        return signal.Signals[parse_signal_name(str(value))]
    except (KeyError, ValueError):
        raise ChartError(f"--chart: {where}: {value!r} is not a signal") from None


def _probe(container: Mapping[str, Any], field: str, ports: Mapping[int | str, str]) -> Probe | None:
    spec = container.get(field)
    if not spec:
        return None
    where = f"container {container.get('name')} {field}"
    action: HttpGet | TcpSocket
    if "httpGet" in spec:
        action = _http_get(spec["httpGet"], ports, where, container)
    elif "tcpSocket" in spec:
        action = TcpSocket(_resolve_port(spec["tcpSocket"].get("port"), ports, where, container))
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


def _http_get(
    action: Mapping[str, Any],
    ports: Mapping[int | str, str],
    where: str,
    container: Mapping[str, Any],
    *,
    is_hook: bool = False,
) -> HttpGet:
    if str(action.get("scheme", "HTTP")).upper() != "HTTP":
        raise ChartError(f"--chart: {where}: scheme {action['scheme']}; only HTTP is simulated")
    headers = tuple((str(h.get("name")), str(h.get("value", ""))) for h in action.get("httpHeaders") or [])
    path = str(action.get("path") or "/")
    try:
        port = _resolve_port(action.get("port"), ports, where, container)
    except UnknownPortName as unknown:
        if not is_hook:
            raise ChartError(f"--chart: {where}: {unknown}") from None
        # The kubelet resolves the name when the hook runs, and fails it then (FailedPreStopHook):
        # the pod starts, and its hook fails at every deletion.
        return HttpGet(next(iter(ports.values()), ""), path, headers, error=str(unknown))
    return HttpGet(port, path, headers)


class UnknownPortName(Exception):
    """A named port that is not one of the hooked or probed container's own."""


def _resolve_port(port: Any, ports: Mapping[int | str, str], where: str, container: Mapping[str, Any]) -> str:
    """A number: any port of the pod (its containers share one network namespace). A name: only
    among the container's own ports, as the kubelet resolves it (its probes and hooks look the
    name up in that container's spec.ports alone; a name of another container's port fails)."""
    if port_number(port) is None and port is not None:
        own = {str(p.get("name")): port_number(p.get("containerPort")) for p in container.get("ports") or []}
        if str(port) not in own:
            declared = ", ".join(sorted(own)) or "none"
            raise UnknownPortName(
                f"port name {port!r} is not one of container {container.get('name')}'s own ports ({declared}); "
                "the kubelet resolves a named port only among the container's own"
            )
        port = own[str(port)]
    symbol = ports.get(_port_key(port))
    if symbol is None:
        known = ", ".join(sorted(str(key) for key in ports)) or "none"
        raise ChartError(f"--chart: {where}: port {port!r} is not a port of the pod's containers ({known})")
    return symbol


def ports_of(container: Mapping[str, Any], symbol: str, admin_port: int | None = None) -> dict[int | str, str]:
    """Each declared port, by name and by number, as `symbol`; `admin_port` as ADMIN_PORT."""
    ports: dict[int | str, str] = {}
    for port in container.get("ports") or []:
        number = port_number(port.get("containerPort"))
        owner = ADMIN_PORT if number is not None and number == admin_port else symbol
        if number is not None:
            ports[number] = owner
        if port.get("name"):
            ports[str(port["name"])] = owner
    return ports


def _port_key(port: Any) -> int | str:
    number = port_number(port)
    return str(port) if number is None else number


def port_number(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def secrets_of(objects: list[dict[str, Any]]) -> dict[tuple[str, str], str]:
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


def env_of(container: Mapping[str, Any], secrets: Secrets) -> dict[str, str]:
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
