"""The knobs users look for: images (registry, digest, pull secrets), the default demo app, the
PodDisruptionBudget, Deployment fields, labels on every object, extra manifests, volumes, envFrom."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from tests.charts.helm import CHART, all_on_values, container, kinds, manifests, render

APP_VERSION = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
IMAGE = "shutdown-sidecar/shutdown-sidecar"


def deployment(values: dict[str, Any] | None = None) -> dict[str, Any]:
    return kinds(manifests(render(values)))["Deployment"]


def test_conventions_default_app_is_the_demo_from_the_sidecar_image() -> None:
    _, app = container(deployment(), "app")
    _, sidecar = container(deployment(), "shutdown-sidecar")
    assert app["image"] == sidecar["image"] == f"ghcr.io/shutdown-sidecar/shutdown-sidecar:{APP_VERSION}"
    assert app["command"] == ["/opt/sidecar/bin/python", "-m", "sidecar.demo"]
    assert app["args"] == ["--host=::", "--port=8080"]  # dual-stack, as the sidecar listens


def test_conventions_an_app_image_of_ones_own_keeps_its_entrypoint() -> None:
    _, app = container(deployment({"app": {"image": {"repository": "web", "tag": "1.2"}}}), "app")
    assert app["image"] == "web:1.2"
    assert "command" not in app
    assert "args" not in app


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        pytest.param({}, f"ghcr.io/{IMAGE}:{APP_VERSION}", id="published-release"),
        pytest.param({"sidecar": {"image": {"tag": "1.2.3"}}}, f"ghcr.io/{IMAGE}:1.2.3", id="tag"),
        pytest.param({"global": {"imageRegistry": "mirror.example"}}, f"mirror.example/{IMAGE}:{APP_VERSION}", id="g"),
        pytest.param(
            {"global": {"imageRegistry": "mirror.example"}, "sidecar": {"image": {"registry": "own.example/"}}},
            f"own.example/{IMAGE}:{APP_VERSION}",
            id="own-registry-wins",
        ),
        pytest.param(
            {"sidecar": {"image": {"digest": "sha256:" + "a" * 64}}},
            f"ghcr.io/{IMAGE}@sha256:" + "a" * 64,
            id="digest-wins-over-tag",
        ),
        pytest.param(
            {"sidecar": {"image": {"registry": "registry.example", "repository": "team/sidecar", "tag": "dev"}}},
            "registry.example/team/sidecar:dev",
            id="own-build",
        ),
        pytest.param(
            {"sidecar": {"image": {"repository": "registry.example:5000/team/sidecar", "tag": "dev"}}},
            "registry.example:5000/team/sidecar:dev",
            id="own-build-as-one-reference",
        ),
        pytest.param(
            {"sidecar": {"image": {"repository": "localhost/sidecar", "tag": "dev"}}},
            "localhost/sidecar:dev",
            id="own-build-on-localhost",
        ),
    ],
)
def test_conventions_image_reference(values: dict[str, Any], expected: str) -> None:
    _, sidecar = container(deployment(values), "shutdown-sidecar")
    assert sidecar["image"] == expected


def test_conventions_app_image_without_tag_or_digest_fails() -> None:
    """The sidecar's tag defaults to the chart's appVersion; an app's image has no such default."""
    import helm_python as helm

    with pytest.raises(helm.HelmRenderError, match="image web: set its tag or its digest"):
        render({"app": {"image": {"repository": "web"}}})


def test_conventions_pull_secrets_global_first_names_or_objects() -> None:
    values = {"global": {"imagePullSecrets": ["a"]}, "imagePullSecrets": [{"name": "b"}, "c"]}
    assert deployment(values)["spec"]["template"]["spec"]["imagePullSecrets"] == [
        {"name": "a"},
        {"name": "b"},
        {"name": "c"},
    ]


@pytest.mark.parametrize(
    ("values", "spec"),
    [
        pytest.param({}, {"maxUnavailable": 1}, id="default"),
        pytest.param({"podDisruptionBudget": {"minAvailable": "50%"}}, {"minAvailable": "50%"}, id="min-available"),
        pytest.param({"replicaCount": 1}, None, id="single-replica-none"),
        pytest.param({"podDisruptionBudget": {"enabled": False}}, None, id="off"),
    ],
)
def test_conventions_pod_disruption_budget(values: dict[str, Any], spec: dict[str, Any] | None) -> None:
    budget = kinds(manifests(render(values))).get("PodDisruptionBudget")
    if spec is None:
        assert budget is None
    else:
        assert budget is not None
        assert {k: v for k, v in budget["spec"].items() if k != "selector"} == spec


def test_conventions_all_on_values_reach_the_objects() -> None:
    objects = manifests(render(all_on_values()))
    for obj in objects:
        assert obj["metadata"]["namespace"] == "shop", obj["kind"]
        if obj["metadata"]["name"] == "web-web-settings":
            continue  # the user's own object, from extraManifests
        assert obj["metadata"]["labels"]["team"] == "storefront", obj["kind"]  # commonLabels
    (workload,) = [o for o in objects if o["kind"] == "Deployment"]
    assert (workload["spec"]["revisionHistoryLimit"], workload["spec"]["minReadySeconds"]) == (5, 5)
    assert workload["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    pod = workload["spec"]["template"]["spec"]
    assert pod["priorityClassName"] == "high-priority"
    assert pod["topologySpreadConstraints"][0]["topologyKey"] == "topology.kubernetes.io/zone"
    assert pod["volumes"] == [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}]
    _, app = container(workload, "app")
    _, sidecar = container(workload, "shutdown-sidecar")
    assert app["volumeMounts"][0]["mountPath"] == sidecar["volumeMounts"][0]["mountPath"] == "/tmp"  # noqa: S108
    assert app["envFrom"] == [{"configMapRef": {"name": "web-settings"}}]
    service = next(o for o in objects if o["kind"] == "Service" and "clusterIP" not in o["spec"])
    assert service["metadata"]["annotations"] == {"example.com/lb": "internal"}
    # extraManifests, templated
    settings = next(o for o in objects if o["kind"] == "ConfigMap" and "GREETING" in o.get("data", {}))
    assert settings["metadata"]["name"] == "web-web-settings"
    test_pod = next(o for o in objects if o["kind"] == "Pod")
    assert test_pod["metadata"]["annotations"]["helm.sh/hook"] == "test"


@pytest.mark.parametrize(("tag", "expected"), [pytest.param("", APP_VERSION, id="default"), ("1.2.3", "1.2.3")])
def test_conventions_version_label_and_notes_name_the_sidecar_image_tag(tag: str, expected: str) -> None:
    rendered = render({"sidecar": {"image": {"tag": tag}}})
    objects = manifests(rendered)
    assert objects
    assert {item["metadata"]["labels"]["app.kubernetes.io/version"] for item in objects} == {expected}
    [notes] = [text for path, text in rendered.items() if path.endswith("NOTES.txt")]
    assert f"shutdown-sidecar {expected} (" in notes
