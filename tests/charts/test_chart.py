"""The Helm chart: lint, renders across modes, the wiring of the sidecar, and values that must fail."""

from __future__ import annotations

import itertools
import json
import signal
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest

from tests.charts.helm import (
    CHART,
    NAMESPACE,
    RELEASE,
    all_on_values,
    container,
    example_chart,
    kinds,
    manifests,
    render,
    render_for_kubernetes,
)
from tests.e2e.sidecar_process import SidecarProcess

MONITORING_ON = {
    "monitoring": {"podMonitor": {"enabled": True}, "prometheusRule": {"enabled": True}, "dashboard": {"enabled": True}}
}
MATRIX = [
    pytest.param(
        {
            "sidecar": {"mode": mode, "adminToken": {"enabled": token, "value": "s3cret" if token else ""}},
            **(MONITORING_ON if monitoring else {}),
        },
        id=f"{mode}-token_{'on' if token else 'off'}-monitoring_{'on' if monitoring else 'off'}",
    )
    for mode, token, monitoring in itertools.product(["native", "classic"], [True, False], [True, False])
]


def rendered_kinds(values: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    return kinds(manifests(render(values)))


@pytest.mark.parametrize("values_name", ["default", "all-on"])
@pytest.mark.parametrize("kube_version", ["v1.29.0", "v1.33.0"])
def test_chart_lint_strict_is_clean(kube_version: str, values_name: str) -> None:
    values = all_on_values() if values_name == "all-on" else None
    report = helm.lint(CHART, values, strict=True, namespace="shop", kube_version=kube_version)
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert report["errors"] == []
    assert problems == []


def test_chart_lint_strict_reports_schema_violations() -> None:
    # Guards the test above: lint does see problems through this binding.
    report = helm.lint(CHART, {"sidecar": {"mode": "sideways"}}, strict=True)
    assert any(m["severity"] == 3 and "sidecar/mode" in m["error"] for m in report["messages"]), report


def test_chart_defaults_render_the_workload_its_token_account_and_budget() -> None:
    assert sorted(rendered_kinds()) == ["Deployment", "PodDisruptionBudget", "Secret", "Service", "ServiceAccount"]


@pytest.mark.parametrize("values", MATRIX)
def test_chart_matrix_renders_the_expected_objects(values: dict[str, Any]) -> None:
    objects = rendered_kinds(values)
    expected = {"Deployment", "Service", "ServiceAccount", "PodDisruptionBudget"}
    if values["sidecar"]["adminToken"]["enabled"]:
        expected.add("Secret")
    if "monitoring" in values:
        expected |= {"PodMonitor", "PrometheusRule", "ConfigMap"}
    assert set(objects) == expected
    field, _ = container(objects["Deployment"], "shutdown-sidecar")
    assert field == ("initContainers" if values["sidecar"]["mode"] == "native" else "containers")


def test_chart_native_sidecar_is_an_always_restarting_init_container() -> None:
    deployment = rendered_kinds()["Deployment"]
    field, sidecar = container(deployment, "shutdown-sidecar")
    assert (field, sidecar["restartPolicy"]) == ("initContainers", "Always")
    assert [c["name"] for c in deployment["spec"]["template"]["spec"]["containers"]] == ["app"]


def test_chart_classic_sidecar_is_a_second_container_without_restart_policy() -> None:
    deployment = rendered_kinds({"sidecar": {"mode": "classic"}})["Deployment"]
    spec = deployment["spec"]["template"]["spec"]
    assert "initContainers" not in spec
    assert [c["name"] for c in spec["containers"]] == ["app", "shutdown-sidecar"]
    assert "restartPolicy" not in spec["containers"][1]


@pytest.mark.parametrize("mode", ["native", "classic"])
def test_chart_sidecar_probes_hit_the_admin_endpoints(mode: str) -> None:
    _, sidecar = container(rendered_kinds({"sidecar": {"mode": mode}})["Deployment"], "shutdown-sidecar")
    paths = {probe: sidecar[probe]["httpGet"]["path"] for probe in ("readinessProbe", "livenessProbe", "startupProbe")}
    assert paths == {"readinessProbe": "/readyz", "livenessProbe": "/livez", "startupProbe": "/startupz"}
    assert {sidecar[p]["httpGet"]["port"] for p in paths} == {"sidecar-admin"}
    assert sidecar["ports"] == [{"name": "sidecar-admin", "containerPort": 9180, "protocol": "TCP"}]
    # Readiness must flip within a second of t0 to take the pod out of endpoints.
    assert sidecar["readinessProbe"]["periodSeconds"] == 1


def test_chart_app_prestop_hook_targets_the_sidecar_port() -> None:
    values = {"sidecar": {"port": 9500, "adminToken": {"enabled": False}}}
    _, app = container(rendered_kinds(values)["Deployment"], "app")
    assert app["lifecycle"]["preStop"] == {"httpGet": {"path": "/prestop", "port": 9500, "scheme": "HTTP"}}


def test_chart_demo_app_listens_on_both_families_like_the_sidecar() -> None:
    # The sidecar's default host is '::' (IPv6 and IPv4): the app next to it must be reachable
    # on an IPv6-only cluster too, where 0.0.0.0 would leave it unreachable at the pod IP.
    _, app = container(rendered_kinds()["Deployment"], "app")
    assert app["command"] == ["/opt/sidecar/bin/python", "-m", "sidecar.demo"]
    assert app["args"] == ["--host=::", "--port=8080"]


def test_chart_grace_period_feeds_pod_and_sidecar_args() -> None:
    values = {
        "terminationGracePeriodSeconds": 90,
        "prestopDelaySeconds": 12,
        "expectedDrainSeconds": 60,
        "reportReserveSeconds": 2,
    }
    deployment = rendered_kinds(values)["Deployment"]
    _, sidecar = container(deployment, "shutdown-sidecar")
    assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 90
    assert sidecar["args"][:5] == [
        "serve",
        "--port=9180",
        "--grace-period=90",
        "--prestop-delay=12",
        "--report-reserve=2",
    ]


def test_chart_sidecar_gets_downward_api_identity() -> None:
    _, sidecar = container(rendered_kinds()["Deployment"], "shutdown-sidecar")
    fields = {
        e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"]
        for e in sidecar["env"]
        if "fieldRef" in e.get("valueFrom", {})
    }
    assert fields == {
        "POD_NAME": "metadata.name",
        "POD_NAMESPACE": "metadata.namespace",
        "NODE_NAME": "spec.nodeName",
        "HOST_IP": "status.hostIP",  # the kubelet's probes come from it: not arrivals
    }


def test_chart_sidecar_security_context_is_locked_down() -> None:
    deployment = rendered_kinds()["Deployment"]
    _, sidecar = container(deployment, "shutdown-sidecar")
    context = sidecar["securityContext"]
    assert context["runAsNonRoot"] is True
    assert context["runAsUser"] == 65532
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    assert deployment["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
    assert sidecar["resources"]["requests"] == {"cpu": "10m", "memory": "48Mi"}


def test_chart_measured_drain_flags_are_on_by_default() -> None:
    _, sidecar = container(rendered_kinds()["Deployment"], "shutdown-sidecar")
    assert [a for a in sidecar["args"] if a.startswith(("--app-port", "--native-sidecar", "--linger"))] == [
        "--app-port=8080",
        "--native-sidecar=true",
    ]


@pytest.mark.parametrize(
    ("sidecar_values", "expected"),
    [
        pytest.param({"nativeSidecarFlag": False}, ["--app-port=8080"], id="app-port-from-first-app-port"),
        pytest.param({"appPort": 3000, "nativeSidecarFlag": False}, ["--app-port=3000"], id="app-port-explicit"),
        pytest.param({"watchAppPort": False}, ["--native-sidecar=true"], id="native-flag"),
        pytest.param({"watchAppPort": False, "mode": "classic"}, [], id="native-flag-ignored-in-classic"),
        pytest.param(
            {"watchAppPort": False, "nativeSidecarFlag": False, "lingerSeconds": 35}, ["--linger=35"], id="linger"
        ),
    ],
)
def test_chart_later_sidecar_flags_follow_their_values(sidecar_values: dict[str, Any], expected: list[str]) -> None:
    # A fixed hold: the default, auto, needs watchAppPort.
    values = {"sidecar": sidecar_values, "prestopDelaySeconds": 5}
    _, sidecar = container(rendered_kinds(values)["Deployment"], "shutdown-sidecar")
    assert [a for a in sidecar["args"] if a.startswith(("--app-port", "--native-sidecar", "--linger"))] == expected


APP_IMAGE = {"repository": "registry.example/web", "tag": "1.0"}


@pytest.mark.parametrize(
    ("values", "pattern"),
    [
        pytest.param({}, r"sidecar\.demo", id="the-demo"),
        pytest.param({"app": {"image": APP_IMAGE, "command": ["uvicorn", "main:app"], "args": ["--port", "8080"]}},
                     "uvicorn main:app --port 8080", id="from-the-apps-command"),
        pytest.param({"app": {"image": APP_IMAGE, "args": ["--workers=2"]}}, "--workers=2", id="from-its-args"),
        pytest.param({"app": {"image": APP_IMAGE, "command": ["python3", "app.py"]}}, r"python3 app\.py",
                     id="escaped"),
        pytest.param({"sidecar": {"watchProcess": "gunicorn: master"}}, "gunicorn: master", id="given"),
    ],
)  # fmt: skip
def test_chart_classic_sidecar_watches_the_apps_process_in_a_shared_process_namespace(
    values: dict[str, Any], pattern: str
) -> None:
    values = {**values, "sidecar": {"mode": "classic", **values.get("sidecar", {})}}
    deployment = rendered_kinds(values)["Deployment"]
    _, sidecar = container(deployment, "shutdown-sidecar")
    assert deployment["spec"]["template"]["spec"]["shareProcessNamespace"] is True
    assert [arg for arg in sidecar["args"] if arg.startswith("--watch")] == [f"--watch-process={pattern}"]


@pytest.mark.parametrize(
    "values",
    [
        pytest.param({"sidecar": {"mode": "native"}}, id="native-sees-the-app-exit-by-its-sigterm"),
        pytest.param({"sidecar": {"mode": "classic", "watchAppProcess": False}}, id="turned-off"),
        pytest.param({"sidecar": {"mode": "classic"}, "app": {"image": APP_IMAGE}}, id="nothing-known-to-look-for"),
    ],
)
def test_chart_process_namespace_is_not_shared_without_a_process_watch(values: dict[str, Any]) -> None:
    deployment = rendered_kinds(values)["Deployment"]
    _, sidecar = container(deployment, "shutdown-sidecar")
    assert "shareProcessNamespace" not in deployment["spec"]["template"]["spec"]
    assert not [arg for arg in sidecar["args"] if arg.startswith("--watch")]


def test_chart_admin_token_reaches_sidecar_secret_and_hook() -> None:
    objects = rendered_kinds({"sidecar": {"adminToken": {"enabled": True, "value": "s3cret"}}})
    secret = objects["Secret"]
    assert secret["metadata"]["name"] == f"{RELEASE}-shutdown-sidecar-admin-token"
    assert secret["data"] == {"token": "czNjcmV0"}
    _, sidecar = container(objects["Deployment"], "shutdown-sidecar")
    token_env = next(e for e in sidecar["env"] if e["name"] == "SIDECAR_ADMIN_TOKEN")
    assert token_env["valueFrom"]["secretKeyRef"] == {"name": secret["metadata"]["name"], "key": "token"}
    _, app = container(objects["Deployment"], "app")
    headers = app["lifecycle"]["preStop"]["httpGet"]["httpHeaders"]
    assert headers == [{"name": "Authorization", "value": "Bearer s3cret"}]


def test_chart_admin_token_from_existing_secret_creates_no_secret() -> None:
    values = {
        "sidecar": {"adminToken": {"enabled": True, "existingSecret": "ops-token", "secretKey": "t", "value": "x"}}
    }
    objects = rendered_kinds(values)
    assert "Secret" not in objects
    _, sidecar = container(objects["Deployment"], "shutdown-sidecar")
    token_env = next(e for e in sidecar["env"] if e["name"] == "SIDECAR_ADMIN_TOKEN")
    assert token_env["valueFrom"]["secretKeyRef"] == {"name": "ops-token", "key": "t"}


def test_chart_pod_monitor_scrapes_the_admin_port_of_this_release() -> None:
    pod_monitor = rendered_kinds(MONITORING_ON)["PodMonitor"]
    assert pod_monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert pod_monitor["spec"]["selector"]["matchLabels"] == {
        "app.kubernetes.io/name": "shutdown-sidecar",
        "app.kubernetes.io/instance": RELEASE,
    }
    (endpoint,) = pod_monitor["spec"]["podMetricsEndpoints"]
    assert (endpoint["port"], endpoint["path"]) == ("sidecar-admin", "/metrics")
    assert endpoint["relabelings"][-1]["targetLabel"] == "workload"


def test_chart_dashboard_config_map_is_labelled_for_grafana() -> None:
    config_map = rendered_kinds(MONITORING_ON)["ConfigMap"]
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    rendered = json.loads(config_map["data"]["shutdown-sidecar.json"])
    source = json.loads((CHART / "files" / "dashboard.json").read_text())
    # The file's dashboard, but for its uid and title, which name the release.
    assert {k: v for k, v in rendered.items() if k not in {"uid", "title"}} == {
        k: v for k, v in source.items() if k not in {"uid", "title"}
    }
    assert rendered["title"] == f"{source['title']} ({NAMESPACE}/{RELEASE})"


def test_chart_dashboard_uid_differs_between_releases_and_fits_grafana() -> None:
    uids = set()
    for namespace, release in [("shop", "web"), ("shop", "api"), ("staging", "web")]:
        options = {"name": release, "namespace": namespace}
        with helm.Chart.load(CHART) as loaded:
            rendered = loaded.render(MONITORING_ON, **options)
        (config_map,) = [o for o in manifests(rendered) if o["kind"] == "ConfigMap"]
        uid = json.loads(config_map["data"]["shutdown-sidecar.json"])["uid"]
        assert len(uid) <= 40  # Grafana's limit
        uids.add(uid)
    assert len(uids) == 3


@pytest.mark.parametrize(
    ("values", "message"),
    [
        pytest.param({"sidecar": {"mode": "sideways"}}, "at '/sidecar/mode': value must be one of", id="mode-enum"),
        pytest.param({"prestopDelaySeconds": -1}, "at '/prestopDelaySeconds': minimum", id="negative-delay"),
        # The sidecar exits 2 below 0.1 s: refused at install, not in a crash-looping pod.
        pytest.param({"reportReserveSeconds": 0.05}, "at '/reportReserveSeconds': minimum", id="reserve-floor"),
        pytest.param({"terminationGracePeriodSeconds": 2.5}, "at '/terminationGracePeriodSeconds'", id="grace-float"),
        pytest.param({"sidecar": {"port": 70000}}, "at '/sidecar/port': maximum", id="port-range"),
        pytest.param({"sidecar": {"readinessProbe": {"exec": {}}}}, "'exec' not allowed", id="probe-handler"),
        pytest.param(
            {"monitoring": {"podMonitor": {"interval": "often"}}}, "/monitoring/podMonitor/interval", id="interval"
        ),
        pytest.param({"replicas": 3}, "additional properties 'replicas' not allowed", id="unknown-key"),
        pytest.param({"app": {"image": {"digest": "latest"}}}, "at '/app/image/digest'", id="digest-pattern"),
        pytest.param({"imagePullSecrets": [{"nom": "x"}]}, "at '/imagePullSecrets/0'", id="pull-secret-shape"),
        pytest.param({"strategy": {"type": "Sideways"}}, "at '/strategy/type'", id="strategy-type"),
        pytest.param({"networkPolicy": {"enabled": True, "admin": {"nodeCIDRs": ["nodes"]}}}, "nodeCIDRs/0", id="cidr"),
        pytest.param({"serviceAccount": {"create": "yes"}}, "at '/serviceAccount/create'", id="sa-create-type"),
        pytest.param({"prestopDelaySeconds": "automatic"}, "at '/prestopDelaySeconds'", id="delay-not-auto"),
        pytest.param({"prestopHold": {"quietConfidence": 1}}, "at '/prestopHold/quietConfidence'", id="confidence-one"),
        pytest.param(
            {"prestopHold": {"quietConfidence": 0}}, "at '/prestopHold/quietConfidence'", id="confidence-zero"
        ),
        pytest.param({"prestopHold": {"maxSeconds": 0}}, "at '/prestopHold/maxSeconds'", id="hold-max-zero"),
        pytest.param({"prestopHold": {"evidence": "packets"}}, "at '/prestopHold/evidence'", id="evidence-enum"),
    ],
)
def test_chart_invalid_values_fail_with_the_schema_message(values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm.HelmValuesError) as failure:
        render(values)
    assert message in str(failure.value)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        pytest.param(
            {"terminationGracePeriodSeconds": 20},
            "timing: terminationGracePeriodSeconds (20) must be at least prestopHold.maxSeconds (9, "
            "prestopDelaySeconds: auto) + expectedDrainSeconds (20) + reportReserveSeconds (1) = 30",
            id="grace-below-sum-with-the-default-auto-hold",
        ),
        pytest.param(
            {"terminationGracePeriodSeconds": 20, "prestopDelaySeconds": 5},
            "timing: terminationGracePeriodSeconds (20) must be at least prestopDelaySeconds (5) + "
            "expectedDrainSeconds (20) + reportReserveSeconds (1) = 26",
            id="grace-below-sum",
        ),
        pytest.param(
            {"terminationGracePeriodSeconds": 6, "expectedDrainSeconds": 0, "prestopDelaySeconds": 5},
            "timing: prestopDelaySeconds (5) + reportReserveSeconds (1) must be less than "
            "terminationGracePeriodSeconds (6)",
            id="sidecar-own-check",
        ),
        pytest.param(
            {"prestopDelaySeconds": "auto", "prestopHold": {"minSeconds": 8, "maxSeconds": 4}},
            "timing: prestopHold.minSeconds (8) must not exceed prestopHold.maxSeconds (4)",
            id="hold-min-above-max",
        ),
        pytest.param(
            {"prestopHold": {"maxSeconds": 15}, "terminationGracePeriodSeconds": 16, "expectedDrainSeconds": 0},
            "timing: prestopHold.maxSeconds (15, prestopDelaySeconds: auto) + reportReserveSeconds (1) must be "
            "less than terminationGracePeriodSeconds (16)",
            id="hold-max-past-the-grace-budget",
        ),
        pytest.param(
            {"sidecar": {"watchAppPort": False}},
            "prestopDelaySeconds: auto (the default) counts the connections to the app port: it needs "
            "sidecar.watchAppPort: true; with watchAppPort: false set a fixed prestopDelaySeconds (e.g. 5)",
            id="default-auto-without-the-app-port",
        ),
        pytest.param(
            {"sidecar": {"adminToken": {"enabled": True, "existingSecret": "ops-token"}}},
            'httpGet headers cannot reference a Secret), and Secret shop/ops-token key "token" was not found',
            id="existing-secret-not-found-offline",
        ),
    ],
)
def test_chart_inconsistent_values_fail_when_rendering(values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm.HelmRenderError) as failure:
        render(values)
    assert message in str(failure.value)


@pytest.mark.parametrize("version", ["v1.29.0", "v1.33.0"])
def test_chart_native_mode_renders_on_kubernetes_with_native_sidecars(version: str) -> None:
    objects = kinds(manifests(render_for_kubernetes(version)))
    assert container(objects["Deployment"], "shutdown-sidecar")[0] == "initContainers"


def test_chart_native_mode_fails_on_kubernetes_before_1_29() -> None:
    with pytest.raises(helm.HelmRenderError, match=r"sidecar.mode=native needs Kubernetes >= 1.29 \(this is v1.28.9\)"):
        render_for_kubernetes("v1.28.9")


def test_chart_classic_mode_renders_on_kubernetes_before_1_29() -> None:
    objects = kinds(manifests(render_for_kubernetes("v1.27.0", {"sidecar": {"mode": "classic"}})))
    assert container(objects["Deployment"], "shutdown-sidecar")[0] == "containers"


def test_chart_prestop_delay_auto_passes_the_hold_bounds_to_the_sidecar() -> None:
    values = {"prestopDelaySeconds": "auto", "prestopHold": {"minSeconds": 2, "maxSeconds": 9, "quietConfidence": 0.99}}
    _, sidecar = container(rendered_kinds(values)["Deployment"], "shutdown-sidecar")
    assert [arg for arg in sidecar["args"] if arg.startswith("--prestop")] == [
        "--prestop-delay=auto",
        "--prestop-delay-min=2",
        "--prestop-delay-max=9",
        "--prestop-quiet-confidence=0.99",
        "--prestop-evidence=connections",
    ]
    on_requests = {"prestopDelaySeconds": "auto", "prestopHold": {"maxSeconds": 9, "evidence": "requests"}}
    _, sidecar = container(rendered_kinds(on_requests)["Deployment"], "shutdown-sidecar")
    assert "--prestop-evidence=requests" in sidecar["args"]


def test_chart_timing_at_the_limit_renders() -> None:
    # Exactly prestop + drain + reserve is enough; the sidecar's own check still holds (5 + 1 < 26).
    values = {"terminationGracePeriodSeconds": 26, "prestopDelaySeconds": 5, "expectedDrainSeconds": 20}
    assert "Deployment" in rendered_kinds(values)
    # The defaults sit at the limit too: a 9 s auto hold + 20 s drain + 1 s reserve = the 30 s grace period.
    assert "Deployment" in rendered_kinds()


def test_chart_defaults_to_the_auto_hold_within_what_the_grace_budget_leaves() -> None:
    _, sidecar = container(rendered_kinds()["Deployment"], "shutdown-sidecar")
    assert [arg for arg in sidecar["args"] if arg.startswith(("--prestop", "--grace-period", "--app-port"))] == [
        "--grace-period=30",
        "--prestop-delay=auto",
        "--prestop-delay-min=1",
        "--prestop-delay-max=9",
        "--prestop-quiet-confidence=0.999",
        "--prestop-evidence=connections",
        "--app-port=8080",
    ]


def test_chart_fixed_prestop_delay_is_the_old_behaviour_without_the_hold_bounds() -> None:
    _, sidecar = container(rendered_kinds({"prestopDelaySeconds": 5})["Deployment"], "shutdown-sidecar")
    assert [arg for arg in sidecar["args"] if arg.startswith("--prestop")] == ["--prestop-delay=5"]


@pytest.mark.parametrize(
    ("values", "timing"),
    [
        pytest.param({}, "prestop hold auto, at most 9s + expected drain 20s", id="auto"),
        pytest.param({"prestopDelaySeconds": 5}, "prestop delay 5s + expected drain 20s", id="fixed"),
    ],
)
def test_chart_notes_give_the_hold_as_configured(values: dict[str, Any], timing: str) -> None:
    [notes] = [text for path, text in render(values).items() if path.endswith("NOTES.txt")]
    assert f"is wired into {RELEASE}-shutdown-sidecar.\n\nTiming: grace 30s = {timing}" in notes


def test_chart_own_chart_example_uses_the_named_templates(tmp_path: Path) -> None:
    chart = example_chart(tmp_path)
    report = helm.lint(chart, strict=True, with_subcharts=True)
    assert [m for m in report["messages"] if m["severity"] >= 2] == []
    objects = manifests(
        render({"shutdown-sidecar": {"sidecar": {"adminToken": {"enabled": True, "value": "t"}}}}, chart)
    )
    by_kind = kinds(objects)
    assert set(by_kind) == {"Deployment", "Secret", "PodMonitor"}
    deployment = by_kind["Deployment"]
    assert deployment["metadata"]["name"] == f"{RELEASE}-own-chart"
    assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 45
    field, sidecar = container(deployment, "shutdown-sidecar")
    assert field == "initContainers"
    assert "--grace-period=45" in sidecar["args"]
    assert {"--prestop-delay=auto", "--prestop-delay-max=13", "--app-port=8080"} <= set(sidecar["args"])
    token_env = next(e for e in sidecar["env"] if e["name"] == "SIDECAR_ADMIN_TOKEN")
    assert token_env["valueFrom"]["secretKeyRef"]["name"] == by_kind["Secret"]["metadata"]["name"]
    _, web = container(deployment, "web")
    assert web["lifecycle"]["preStop"]["httpGet"]["path"] == "/prestop"
    assert by_kind["PodMonitor"]["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/name": "own-chart"}


def test_chart_own_chart_example_inherits_the_timing_check(tmp_path: Path) -> None:
    chart = example_chart(tmp_path)
    with pytest.raises(helm.HelmRenderError, match="timing: terminationGracePeriodSeconds \\(30\\)"):
        render({"shutdown-sidecar": {"terminationGracePeriodSeconds": 30}}, chart)


# Documented as one row each: an image's fields, a probe's timing fields, the strategy object.
GROUPED_VALUES = {"image", "readinessProbe", "livenessProbe", "startupProbe", "strategy"}


def schema_keys(schema: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted names of the schema's leaves and grouped values."""
    keys: list[str] = []
    for name, sub in schema.get("properties", {}).items():
        dotted = f"{prefix}{name}"
        nested = "properties" in sub and name not in GROUPED_VALUES
        keys.extend(schema_keys(sub, f"{dotted}.") if nested else [dotted])
    return keys


def test_chart_readme_documents_every_value() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    readme = (CHART / "README.md").read_text()
    undocumented = [key for key in schema_keys(schema) if f"`{key}`" not in readme and f"`{key}." not in readme]
    assert undocumented == []


def test_chart_rendered_sidecar_arguments_and_environment_start_the_real_sidecar() -> None:
    """The chart and the CLI must not drift: the rendered args and env start `python -m sidecar`."""
    rendered = rendered_kinds({"sidecar": {"lingerSeconds": 1}})["Deployment"]
    _, sidecar = container(rendered, "shutdown-sidecar")
    args = ["--port=0" if arg.startswith("--port=") else arg for arg in sidecar["args"]]
    env = {item["name"]: item["value"] for item in sidecar["env"] if "value" in item}
    process = SidecarProcess([*args, "--host", "127.0.0.1", "--termination-log", ""], env=env)
    try:
        ready = process.wait_for_log(lambda line: line.get("msg") == "sidecar ready", 10)
        assert ready["grace_period_seconds"] == rendered["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        assert ready["app_port"] == 8080
        process.send_signal(signal.SIGINT)
        process.wait_for_log(lambda line: line.get("to") == "prestop_delay", 5)
        process.send_signal(signal.SIGINT)  # a second one: finish the report now
        assert process.wait(timeout=10) == 0
    finally:
        process.close()
