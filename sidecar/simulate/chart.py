"""`simulate --chart`: a rendered chart's workload cut down to the PodTemplate the simulated
kubelet runs: which container is the sidecar (and in which mode), its flags rewritten for
loopback, and the app run as the user's command. Rendering is sidecar.simulate.helm, each
container's hook, probes and environment sidecar.simulate.manifest. It runs nothing, and does not
guess: what it cannot rehearse faithfully is a ChartError naming the flag to fix."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from sidecar.simulate.helm import ChartError, render_chart
from sidecar.simulate.manifest import Secrets, container_spec, env_of, port_number, ports_of, secrets_of
from sidecar.simulate.podspec import (
    ADMIN_PORT,
    ADMIN_PORT_PLACEHOLDER,
    APP_PID_PLACEHOLDER,
    APP_PORT,
    HOST_PLACEHOLDER,
    PORT_PLACEHOLDER,
    TERMINATION_LOG_PLACEHOLDER,
    ContainerSpec,
    Mode,
    PodTemplate,
)

WORKLOAD_KINDS: Final = ("Deployment", "StatefulSet", "DaemonSet")
DEFAULT_GRACE_SECONDS: Final = 30.0  # core/v1 PodSpec.terminationGracePeriodSeconds
SIDECAR_NAME: Final = "shutdown-sidecar"
ENTRYPOINT: Final = "shutdown-sidecar"  # the image's ENTRYPOINT, by its file name
IMAGE_CMD: Final = ("serve",)  # the image's CMD: what runs when a container sets neither command nor args
SUBCOMMANDS: Final = ("serve", "run")
DEFAULT_ADMIN_PORT: Final = 9180

# The settings that name this pod's addresses and files. On one machine every simulated pod needs its
# own ports and termination log, so their chart values are replaced (in both the flag and the
# SIDECAR_* variable); the sidecar's defaults would clash between pods, hence ADDED_FLAGS. The host
# becomes the pod's address, unless the chart binds loopback only: that is kept, and fails here as
# it fails in a cluster (the kubelet's probes and hooks come to the pod IP).
REWRITTEN_FLAGS: Final = {
    "--host": HOST_PLACEHOLDER,
    "--port": ADMIN_PORT_PLACEHOLDER,
    "--app-port": PORT_PLACEHOLDER,
    "--termination-log": TERMINATION_LOG_PLACEHOLDER,
}
ADDED_FLAGS: Final = ("--host", "--port", "--termination-log")
WATCH_FLAGS: Final = ("--watch-pid", "--watch-process")
WATCH_ENV: Final = ("SIDECAR_WATCH_PID", "SIDECAR_WATCH_PROCESS")
REWRITTEN_ENV: Final = {"SIDECAR_" + flag[2:].upper().replace("-", "_"): v for flag, v in REWRITTEN_FLAGS.items()}
LOOPBACK_HOSTS: Final = ("localhost", "::1")


def is_loopback_only(host: str) -> bool:
    return host.startswith("127.") or host in LOOPBACK_HOSTS


def rewritten(flag: str, value: str) -> str:
    """The value a pod-specific setting gets here (a loopback-only host is kept: see REWRITTEN_FLAGS)."""
    if flag == "--host" and is_loopback_only(value):
        return value
    return REWRITTEN_FLAGS[flag]


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
    secrets = secrets_of(objects)
    if sidecar is None:
        app = _only_app(others, containers)
        ports = ports_of(app, APP_PORT)
        return PodTemplate(Mode.NONE, grace_seconds, (), (_app_spec(app, app_command, ports, secrets, spec),))

    head, tail, settings = _rewrite_flags(_sidecar_arguments(sidecar))
    env = env_of(sidecar, secrets)
    admin_port = port_number(settings.get("--port", env.get("SIDECAR_PORT"))) or DEFAULT_ADMIN_PORT
    app_port = port_number(settings.get("--app-port", env.get("SIDECAR_APP_PORT")))
    env.update(
        (key, rewritten("--" + key[len("SIDECAR_") :].lower().replace("_", "-"), env[key]))
        for key in REWRITTEN_ENV
        if key in env
    )
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
        ports = {**ports_of(sidecar, APP_PORT, admin_port), admin_port: ADMIN_PORT}
        wrapper = container_spec(
            sidecar, (*argv, "--", *app_command), env, ports, serves_traffic=True, reports=True,
            field=field_of(spec, sidecar),
        )  # fmt: skip
        return PodTemplate(Mode.RUN, grace_seconds, (), (wrapper,))

    app = _only_app(others, containers)
    argv = (sys.executable, "-m", "sidecar", *_process_watch_here(head, env, spec, sidecar, app))
    # One map for the pod: its containers share a network namespace, and the app's preStop hook
    # calls the sidecar's port by number.
    ports = {**ports_of(app, APP_PORT), **ports_of(sidecar, ADMIN_PORT), admin_port: ADMIN_PORT}
    if app_port is not None:
        ports.setdefault(app_port, APP_PORT)
    app_spec = _app_spec(app, app_command, ports, secrets, spec)
    sidecar_spec = container_spec(sidecar, (*argv, *tail), env, ports, reports=True, field=field_of(spec, sidecar))
    if any(c is sidecar for c in native):
        return PodTemplate(Mode.NATIVE, grace_seconds, (sidecar_spec,), (app_spec,))
    return PodTemplate(Mode.CLASSIC, grace_seconds, (), (app_spec, sidecar_spec))


def _process_watch_here(
    flags: list[str],
    env: dict[str, str],
    pod_spec: Mapping[str, Any],
    sidecar: Mapping[str, Any],
    app: Mapping[str, Any],
) -> list[str]:
    """The sidecar's --watch-pid/--watch-process as they work here. In a cluster the sidecar sees
    the app's process only with shareProcessNamespace: true; without it, the flag is left out, as
    the sidecar would find nothing and let its other sources decide. With it, the sidecar watches
    the app's main process, here given as its PID (a pattern would search this whole machine).
    Changes `env`; raises ChartError for a watch the kubelet here cannot give a PID to."""
    kept: list[str] = []
    watches = False
    arguments = iter(flags)
    for flag in arguments:
        name, has_value, _ = flag.partition("=")
        if name in WATCH_FLAGS:
            watches = True
            if not has_value:
                next(arguments, None)  # `--flag value`
            continue
        kept.append(flag)
    for key in WATCH_ENV:
        watches = env.pop(key, None) is not None or watches
    if not watches or not pod_spec.get("shareProcessNamespace"):
        return kept
    containers = list(pod_spec.get("containers") or [])
    if not any(c is sidecar for c in containers) or containers.index(sidecar) < containers.index(app):
        raise ChartError(
            f"--chart: {field_of(pod_spec, sidecar)}: its process watch is rehearsed only for a classic sidecar "
            "listed after the app container (started after it, the sidecar is given the app's PID here)"
        )
    return [*kept, f"--watch-pid={APP_PID_PLACEHOLDER}"]


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
            flags.append(f"{flag}={rewritten(flag, value)}")
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
    app: Mapping[str, Any],
    app_command: Sequence[str],
    ports: Mapping[int | str, str],
    secrets: Secrets,
    pod_spec: Mapping[str, Any],
) -> ContainerSpec:
    # The user's environment gets what the chart gives the app, as the app in the pod would.
    env = env_of(app, secrets)
    return container_spec(app, tuple(app_command), env, ports, serves_traffic=True, field=field_of(pod_spec, app))


def field_of(pod_spec: Mapping[str, Any], container: Mapping[str, Any]) -> str:
    """The container's place in the workload, as kubectl names a field: spec.template.spec.containers[0]."""
    for key in ("initContainers", "containers"):
        for index, candidate in enumerate(pod_spec.get(key) or []):
            if candidate is container:
                return f"spec.template.spec.{key}[{index}]"
    return f"container {container.get('name')}"
