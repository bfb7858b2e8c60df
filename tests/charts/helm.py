"""The chart under test, rendered by the real Helm engine (helm-python-sdk binds Helm's Go SDK)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python as helm
import yaml
from helm_python import _native

ROOT = Path(__file__).resolve().parent.parent.parent
CHART = ROOT / "charts" / "shutdown-sidecar"
EXAMPLE = CHART / "examples" / "own-chart"
# Every optional object and knob on: linted, validated and scanned next to the defaults.
ALL_ON_VALUES = CHART / "ci" / "all-on-values.yaml"
RELEASE = "web"
NAMESPACE = "shop"

# The engine logs each `fail` at INFO on stderr; the tests read the raised message instead.
helm.disable_logging()


def render(values: dict[str, Any] | None = None, chart: Path = CHART) -> dict[str, str]:
    """Template path → rendered text, as `helm template` would render it (schema checked first)."""
    with helm.Chart.load(chart) as loaded:
        return loaded.render(values, name=RELEASE, namespace=NAMESPACE)


def render_for_kubernetes(version: str, values: dict[str, Any] | None = None) -> dict[str, str]:
    """render() against a given Kubernetes version (.Capabilities.KubeVersion).

    Chart.render() does not expose the option; the library's helm_render takes it in its options JSON
    (its Go options struct has `kube_version`), so this calls the binding one level down.
    """
    options = {"name": RELEASE, "namespace": NAMESPACE, "kube_version": version}
    with helm.Chart.load(CHART) as loaded:
        rendered = _native.call_string("helm_render", loaded._raw(), json.dumps(values or {}), json.dumps(options))
    result: dict[str, str] = json.loads(rendered)
    return result


def all_on_values() -> dict[str, Any]:
    values: dict[str, Any] = yaml.safe_load(ALL_ON_VALUES.read_text())
    return values


def manifests(rendered: dict[str, str]) -> list[dict[str, Any]]:
    """Every Kubernetes object in a render (NOTES.txt and empty documents left out)."""
    objects: list[dict[str, Any]] = []
    for path, text in sorted(rendered.items()):
        if path.endswith("NOTES.txt"):
            continue
        objects.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return objects


def kinds(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Objects by kind; each kind appears at most once in this chart."""
    by_kind: dict[str, dict[str, Any]] = {}
    for obj in objects:
        assert obj["kind"] not in by_kind, f"two {obj['kind']} objects"
        by_kind[obj["kind"]] = obj
    return by_kind


def pod_containers(deployment: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """("initContainers" | "containers", container) for each container of the pod template."""
    spec = deployment["spec"]["template"]["spec"]
    for field in ("initContainers", "containers"):
        for container in spec.get(field, []):
            yield field, container


def container(deployment: dict[str, Any], name: str) -> tuple[str, dict[str, Any]]:
    matches = [(field, c) for field, c in pod_containers(deployment) if c["name"] == name]
    assert len(matches) == 1, f"{name}: {matches}"
    return matches[0]


def example_chart(destination: Path) -> Path:
    """The own-chart example with its dependency in charts/, as `helm dependency build` leaves it."""
    target = destination / "own-chart"
    shutil.copytree(EXAMPLE, target)
    shutil.copytree(CHART, target / "charts" / "shutdown-sidecar", ignore=shutil.ignore_patterns("examples"))
    return target
