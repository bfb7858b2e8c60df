"""Every rendered object validated strictly against the schemas of each Kubernetes version the chart
supports (kubeVersion >= 1.25: classic mode from 1.25, native mode from 1.29, up to the newest
kubernetes-validate knows), on the default values, the all-on values file and the mode/token matrix;
the CRD kinds (PodMonitor, PrometheusRule), which kubernetes-validate does not know, are checked
structurally."""

from __future__ import annotations

import itertools
from typing import Any

import kubernetes_validate
import kubernetes_validate.utils
import pytest
import yaml

from tests.charts.helm import CHART, NAMESPACE, all_on_values, manifests, render, render_for_kubernetes


def semver(version: str) -> tuple[int, int]:
    major, minor, *_ = version.split(".")
    return int(major), int(minor)


SUPPORTED = [v for v in dict.fromkeys(kubernetes_validate.utils.all_versions()) if semver(v) >= (1, 25)]
NATIVE_VERSIONS = [v for v in SUPPORTED if semver(v) >= (1, 29)]
CLASSIC_ONLY_VERSIONS = [v for v in SUPPORTED if semver(v) < (1, 29)]
KUBERNETES_VERSIONS = ["1.29.0", "1.30.0", "1.31.0", "1.32.0", "1.33.0"]
CRD_KINDS = {"PodMonitor", "PrometheusRule"}
MONITORING = {
    "monitoring": {"podMonitor": {"enabled": True}, "prometheusRule": {"enabled": True}, "dashboard": {"enabled": True}}
}
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


def validate_all(objects: list[dict[str, Any]], version: str) -> None:
    for obj in objects:
        if obj["kind"] not in CRD_KINDS:
            kubernetes_validate.validate(obj, version, strict=True)


def test_manifests_cover_every_supported_kubernetes_version() -> None:
    # Guards the tests below: the newest versions kubernetes-validate knows are in, and the chart's floor.
    assert CLASSIC_ONLY_VERSIONS[0] == "1.25.0"
    assert semver(NATIVE_VERSIONS[-1]) >= (1, 33)


@pytest.mark.parametrize("version", NATIVE_VERSIONS)
@pytest.mark.parametrize("values_name", ["default", "all-on"])
def test_manifests_default_and_all_on_validate_strictly(values_name: str, version: str) -> None:
    values = all_on_values() if values_name == "all-on" else None
    objects = manifests(render_for_kubernetes(f"v{version}", values))
    assert {"Deployment", "Service", "Secret", "ServiceAccount"} <= {obj["kind"] for obj in objects}
    validate_all(objects, version)


@pytest.mark.parametrize("version", CLASSIC_ONLY_VERSIONS)
@pytest.mark.parametrize("values_name", ["default", "all-on"])
def test_manifests_classic_mode_validates_on_kubernetes_before_native_sidecars(values_name: str, version: str) -> None:
    values = all_on_values() if values_name == "all-on" else {}
    values["sidecar"] = {**values.get("sidecar", {}), "mode": "classic"}
    validate_all(manifests(render_for_kubernetes(f"v{version}", values)), version)


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
        assert set(endpoint) <= {"port", "path", "interval", "scrapeTimeout", "relabelings", "metricRelabelings"}
        for relabeling in endpoint["relabelings"] + endpoint.get("metricRelabelings", []):
            assert set(relabeling) <= {"action", "sourceLabels", "regex", "targetLabel", "replacement"}


def test_manifests_pod_monitor_takes_scrape_timeout_and_relabelings() -> None:
    (pod_monitor,) = [obj for obj in manifests(render(all_on_values())) if obj["kind"] == "PodMonitor"]
    (endpoint,) = pod_monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["scrapeTimeout"] == "10s"
    # The chart's workload relabeling first (the alerts and dashboard need it), then the user's.
    assert [r["targetLabel"] for r in endpoint["relabelings"]] == ["workload", "workload", "cluster"]
    assert endpoint["metricRelabelings"][0]["action"] == "drop"


def test_manifests_prometheus_rule_embeds_the_rules_file_scoped_to_the_namespace() -> None:
    (rule,) = [obj for obj in rendered(VALUE_SETS[0].values[0]) if obj["kind"] == "PrometheusRule"]
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    source = (CHART / "files" / "alerts.yaml").read_text()
    assert source.count('namespace=~".+"') >= 4
    assert rule["spec"] == yaml.safe_load(source.replace('namespace=~".+"', f'namespace="{NAMESPACE}"'))
    for group in rule["spec"]["groups"]:
        assert set(group) <= {"name", "interval", "rules"}
        for alert in group["rules"]:
            assert set(alert) <= {"alert", "expr", "for", "keep_firing_for", "labels", "annotations"}


def test_manifests_prometheus_rule_and_dashboard_take_the_runbook_url() -> None:
    values = {**MONITORING, "monitoring": {**MONITORING["monitoring"], "runbookUrl": "https://wiki.example/sidecar"}}
    objects = {obj["kind"]: obj for obj in rendered(values)}
    for alert in objects["PrometheusRule"]["spec"]["groups"][0]["rules"]:
        assert alert["annotations"]["runbook_url"].startswith("https://wiki.example/sidecar#")
    assert "https://wiki.example/sidecar#" in objects["ConfigMap"]["data"]["shutdown-sidecar.json"]
    assert "github.com" not in objects["ConfigMap"]["data"]["shutdown-sidecar.json"]
