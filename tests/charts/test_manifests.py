"""Every rendered object validated strictly against the Kubernetes 1.29-1.33 schemas; the CRD kinds
(PodMonitor, PrometheusRule), which kubernetes-validate does not know, are checked structurally."""

from __future__ import annotations

import itertools
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.charts.helm import CHART, manifests, render

KUBERNETES_VERSIONS = ["1.29.0", "1.30.0", "1.31.0", "1.32.0", "1.33.0"]
CRD_KINDS = {"PodMonitor", "PrometheusRule"}
VALUE_SETS = [
    pytest.param(
        {
            "sidecar": {"mode": mode, "adminToken": {"enabled": token, "value": "s3cret" if token else ""}},
            "monitoring": {
                "podMonitor": {"enabled": True},
                "prometheusRule": {"enabled": True},
                "dashboard": {"enabled": True},
            },
        },
        id=f"{mode}-token_{'on' if token else 'off'}",
    )
    for mode, token in itertools.product(["native", "classic"], [True, False])
]


def rendered(values: dict[str, Any]) -> list[dict[str, Any]]:
    return manifests(render(values))


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("values", VALUE_SETS)
def test_manifests_validate_strictly_against_kubernetes(values: dict[str, Any], version: str) -> None:
    core = [obj for obj in rendered(values) if obj["kind"] not in CRD_KINDS]
    assert {obj["kind"] for obj in core} >= {"Deployment", "Service", "ConfigMap"}
    for obj in core:
        kubernetes_validate.validate(obj, version, strict=True)


def test_manifests_validation_rejects_an_unknown_container_field() -> None:
    # Guards the test above: strict validation does catch a misspelt field in what we render.
    (deployment,) = [obj for obj in rendered({}) if obj["kind"] == "Deployment"]
    deployment["spec"]["template"]["spec"]["initContainers"][0]["restartPolicyy"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, "1.29.0", strict=True)


def test_manifests_pod_monitor_has_the_crd_shape() -> None:
    (pod_monitor,) = [obj for obj in rendered(VALUE_SETS[0].values[0]) if obj["kind"] == "PodMonitor"]
    assert set(pod_monitor) == {"apiVersion", "kind", "metadata", "spec"}
    assert pod_monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert set(pod_monitor["spec"]) == {"selector", "podMetricsEndpoints"}
    for endpoint in pod_monitor["spec"]["podMetricsEndpoints"]:
        assert set(endpoint) <= {"port", "path", "interval", "relabelings"}
        for relabeling in endpoint["relabelings"]:
            assert set(relabeling) <= {"action", "sourceLabels", "regex", "targetLabel", "replacement"}


def test_manifests_prometheus_rule_embeds_the_rules_file_verbatim() -> None:
    (rule,) = [obj for obj in rendered(VALUE_SETS[0].values[0]) if obj["kind"] == "PrometheusRule"]
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["spec"] == yaml.safe_load((CHART / "files" / "alerts.yaml").read_text())
    for group in rule["spec"]["groups"]:
        assert set(group) <= {"name", "interval", "rules"}
        for alert in group["rules"]:
            assert set(alert) <= {"alert", "expr", "for", "labels", "annotations"}
