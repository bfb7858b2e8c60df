"""Hand-written Kubernetes objects for the chart and manifest tests: a Deployment around the given
containers, an app container with a named port, the sidecar container, and the project's chart."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

CHART: Final = Path(__file__).resolve().parent.parent.parent / "charts" / "shutdown-sidecar"
NATIVE: Final = {"restartPolicy": "Always"}
HOOK: Final = {"preStop": {"httpGet": {"path": "/prestop", "port": 9180}}}


def deployment(*containers: dict[str, Any], init: tuple[dict[str, Any], ...] = (), **pod: Any) -> list[dict[str, Any]]:
    spec = {"containers": list(containers), **pod}
    if init:
        spec["initContainers"] = list(init)
    return [{"kind": "Deployment", "metadata": {"name": "web"}, "spec": {"template": {"spec": spec}}}]


def app_container(name: str = "web", **fields: Any) -> dict[str, Any]:
    return {"name": name, "image": "web:1", "ports": [{"name": "http", "containerPort": 8080}], **fields}


def sidecar_container(*args: str, **fields: Any) -> dict[str, Any]:
    return {"name": "shutdown-sidecar", "args": list(args), "ports": [{"containerPort": 9180}], **fields}
