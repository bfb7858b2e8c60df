"""`simulate --manifest` and `--chart`: one Deployment, StatefulSet or DaemonSet (a YAML file, - for
stdin, or a chart's render) read into what the rehearsal runs: its pod template (the translation --chart uses, in
sidecar.simulate.chart), replicas and update strategy, and the fields it does not model. Runs nothing."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from sidecar.simulate.chart import WORKLOAD_KINDS, template_from_manifests
from sidecar.simulate.helm import ChartError
from sidecar.simulate.podspec import PodTemplate
from sidecar.simulate.strategy import Kind, Strategy, StrategyType, int_or_percent

# What the rehearsal reads, or what cannot change a termination (images, resources, scheduling):
# any other field is listed once as not modelled, so a user knows what the rehearsal left out.
# securityContext is listed: every container here runs as this machine's user on a writable file
# system, so an app that cannot write, or a sidecar that cannot read another container's
# processes, under the pod's securityContext is not rehearsed.
WORKLOAD_FIELDS: Final = frozenset(
    {"replicas", "strategy", "updateStrategy", "minReadySeconds", "template", "selector", "revisionHistoryLimit",
     "progressDeadlineSeconds", "serviceName", "podManagementPolicy"}
)  # fmt: skip
POD_FIELDS: Final = frozenset(
    {"containers", "initContainers", "terminationGracePeriodSeconds", "volumes", "serviceAccountName",
     "nodeSelector", "affinity", "tolerations", "imagePullSecrets", "os", "priorityClassName",
     "topologySpreadConstraints", "automountServiceAccountToken",
     "shareProcessNamespace"}  # read by sidecar.simulate.chart: whether a process watch sees the app
)  # fmt: skip
CONTAINER_FIELDS: Final = frozenset(
    {"name", "image", "imagePullPolicy", "command", "args", "env", "ports", "lifecycle", "readinessProbe",
     "startupProbe", "resources", "volumeMounts", "restartPolicy", "terminationMessagePath",
     "terminationMessagePolicy", "workingDir"}
)  # fmt: skip
LIFECYCLE_FIELDS: Final = frozenset({"preStop", "stopSignal"})
FLAGS: Final = ("--manifest", "--chart")
INSTALL_HINT: Final = "--manifest needs PyYAML: pip install 'shutdown-sidecar[chart]'"


@dataclasses.dataclass(frozen=True)
class Workload:
    template: PodTemplate
    replicas: int | None  # None: a DaemonSet (one pod per node; --pods nodes)
    strategy: Strategy
    not_modelled: tuple[str, ...]  # field paths, for one line on stderr


def read_manifest(path: str) -> list[dict[str, Any]]:
    """Every object in the YAML file (`-`: stdin). Raises ChartError naming --manifest."""
    try:
        import yaml
    except ImportError:
        raise ChartError(INSTALL_HINT) from None
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
        return [obj for obj in yaml.safe_load_all(text) if isinstance(obj, dict)]
    except (OSError, UnicodeDecodeError) as error:
        raise ChartError(f"--manifest: cannot read {path}: {error}") from None
    except yaml.YAMLError as error:
        raise ChartError(f"--manifest: {path} is not valid YAML: {' '.join(str(error).split())}") from None


def workload_from_manifests(
    objects: list[dict[str, Any]], app_command: Sequence[str], *, flag: str = "--manifest"
) -> Workload:
    """The one workload among `objects` as the rehearsal runs it: a manifest's, or a rendered
    chart's (`flag` --chart), through the same translation. Raises ChartError (naming `flag`) for
    none, more than one, or what cannot be rehearsed."""
    try:
        return _workload(objects, app_command)
    except ChartError as error:
        # The pod's translation names --chart, the rest --manifest: the message names the flag given.
        source, colon, reason = str(error).partition(":")
        raise ChartError(f"{flag}:{reason}" if colon and source in FLAGS else str(error)) from None


def _workload(objects: list[dict[str, Any]], app_command: Sequence[str]) -> Workload:
    workloads = [obj for obj in objects if obj.get("kind") in WORKLOAD_KINDS]
    if len(workloads) != 1:
        found = ", ".join(str(obj.get("kind")) for obj in workloads) or "none"
        raise ChartError(f"--manifest: expected one Deployment, StatefulSet or DaemonSet; found {found}")
    workload = workloads[0]
    template = template_from_manifests(objects, app_command)
    kind = Kind(workload["kind"])
    spec = workload.get("spec") or {}
    replicas = None if kind is Kind.DAEMONSET else int(spec.get("replicas", 1))
    return Workload(template, replicas, strategy_of(kind, spec), tuple(not_modelled(kind, spec)))


def strategy_of(kind: Kind, spec: Mapping[str, Any]) -> Strategy:
    """spec.strategy (Deployment) or spec.updateStrategy (StatefulSet, DaemonSet), minReadySeconds."""
    field = "strategy" if kind is Kind.DEPLOYMENT else "updateStrategy"
    update = spec.get(field) or {}
    type_name = str(update.get("type", "RollingUpdate"))
    if type_name == "OnDelete":
        raise ChartError(f"--manifest: spec.{field}.type: OnDelete replaces no pod by itself: nothing to rehearse")
    try:
        strategy_type = StrategyType(type_name)
    except ValueError:
        raise ChartError(f"--manifest: spec.{field}.type: {type_name!r} is not a strategy type") from None
    rolling = update.get("rollingUpdate") or {}
    surge, unavailable = (_fencepost(rolling, name, field) for name in ("maxSurge", "maxUnavailable"))
    if kind is Kind.STATEFULSET:
        surge = unavailable = None  # listed by not_modelled: partition and the alpha maxUnavailable
    strategy = Strategy(kind, strategy_type, surge, unavailable, int(spec.get("minReadySeconds", 0)))
    problem = strategy.problem()
    if problem is not None:
        raise ChartError(f"--manifest: spec.{field}: {problem}")
    return strategy


def _fencepost(rolling: Mapping[str, Any], name: str, field: str) -> str | None:
    value = rolling.get(name)
    if value is None:
        return None
    try:
        return int_or_percent(str(value))
    except ValueError as error:
        raise ChartError(f"--manifest: spec.{field}.rollingUpdate.{name}: {error}") from None


def not_modelled(kind: Kind, spec: Mapping[str, Any]) -> list[str]:
    fields = [f"spec.{key}" for key in spec if key not in WORKLOAD_FIELDS]
    if kind is Kind.STATEFULSET:
        rolling = (spec.get("updateStrategy") or {}).get("rollingUpdate") or {}
        fields += [f"spec.updateStrategy.rollingUpdate.{key}" for key in rolling]
    pod = (spec.get("template") or {}).get("spec") or {}
    fields += [f"spec.template.spec.{key}" for key in pod if key not in POD_FIELDS]
    for group in ("initContainers", "containers"):
        for index, container in enumerate(pod.get(group) or []):
            where = f"spec.template.spec.{group}[{index}]"
            fields += [f"{where}.{key}" for key in container if key not in CONTAINER_FIELDS]
            lifecycle = container.get("lifecycle") or {}
            fields += [f"{where}.lifecycle.{key}" for key in lifecycle if key not in LIFECYCLE_FIELDS]
    return fields
