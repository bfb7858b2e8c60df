"""A Deployment, StatefulSet or DaemonSet manifest read into the rehearsal: replicas, update
strategy, the pod (shared with --chart), stop signals, and the fields left out listed."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest

from sidecar.simulate.helm import ChartError
from sidecar.simulate.podspec import ExecHook, Mode
from sidecar.simulate.strategy import Kind, StrategyType
from sidecar.simulate.workload import read_manifest, workload_from_manifests
from tests.simulate.manifests import HOOK, NATIVE, app_container, deployment, sidecar_container

APP = ("app", "--port", "{port}")


def native_deployment(**spec: Any) -> list[dict[str, Any]]:
    objects = deployment(app_container(lifecycle=HOOK), init=(sidecar_container("serve", **NATIVE),))
    objects[0]["spec"].update(spec)
    return objects


def test_workload_deployment_gives_replicas_and_its_rolling_update() -> None:
    rolling = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": "50%"}}
    workload = workload_from_manifests(native_deployment(replicas=2, strategy=rolling, minReadySeconds=1), APP)
    assert workload.template.mode is Mode.NATIVE
    assert workload.replicas == 2
    strategy = workload.strategy
    assert (strategy.kind, strategy.type, strategy.max_surge, strategy.max_unavailable) == (
        Kind.DEPLOYMENT, StrategyType.ROLLING_UPDATE, "0", "50%",
    )  # fmt: skip
    assert strategy.min_ready_seconds == 1
    assert workload.not_modelled == ()


@pytest.mark.parametrize(
    ("kind", "update", "expected"),
    [
        pytest.param("Deployment", {"strategy": {"type": "Recreate"}}, StrategyType.RECREATE, id="recreate"),
        pytest.param("StatefulSet", {}, StrategyType.ROLLING_UPDATE, id="statefulset"),
        pytest.param("DaemonSet", {"updateStrategy": {"rollingUpdate": {"maxSurge": 1}}}, StrategyType.ROLLING_UPDATE,
                     id="daemonset"),
    ],
)  # fmt: skip
def test_workload_strategy_follows_the_kind(kind: str, update: dict[str, Any], expected: StrategyType) -> None:
    objects = native_deployment(**update)
    objects[0]["kind"] = kind
    workload = workload_from_manifests(objects, APP)
    assert (workload.strategy.kind, workload.strategy.type) == (Kind(kind), expected)
    assert workload.replicas == (None if kind == "DaemonSet" else 1)


def test_workload_on_delete_is_refused() -> None:
    objects = native_deployment(updateStrategy={"type": "OnDelete"})
    objects[0]["kind"] = "StatefulSet"
    with pytest.raises(ChartError, match=r"^--manifest: spec.updateStrategy.type: OnDelete"):
        workload_from_manifests(objects, APP)


@pytest.mark.parametrize("flag", ["--manifest", "--chart"])
def test_workload_errors_name_the_flag_the_workload_came_from(flag: str) -> None:
    objects = native_deployment(updateStrategy={"type": "OnDelete"})
    objects[0]["kind"] = "StatefulSet"
    with pytest.raises(ChartError, match=rf"^{flag}: spec.updateStrategy.type: OnDelete"):
        workload_from_manifests(objects, APP, flag=flag)
    with pytest.raises(ChartError, match=rf"^{flag}: the simulator runs one app container"):
        workload_from_manifests(deployment(app_container(), app_container()), APP, flag=flag)


def test_workload_security_context_is_listed_as_not_modelled() -> None:
    objects = native_deployment()
    objects[0]["spec"]["template"]["spec"]["shareProcessNamespace"] = True  # modelled: a process watch sees the app
    objects[0]["spec"]["template"]["spec"]["securityContext"] = {"runAsNonRoot": True}
    objects[0]["spec"]["template"]["spec"]["containers"][0]["securityContext"] = {"readOnlyRootFilesystem": True}
    assert workload_from_manifests(objects, APP).not_modelled == (
        "spec.template.spec.securityContext",
        "spec.template.spec.containers[0].securityContext",
    )


def test_workload_stop_signal_and_exec_hook_come_from_each_container() -> None:
    app = app_container(lifecycle={"preStop": {"exec": {"command": ["sleep", "1"]}}, "stopSignal": "SIGINT"})
    workload = workload_from_manifests(deployment(app), APP)
    [container] = workload.template.containers
    assert (container.stop_signal, container.pre_stop) == (signal.SIGINT, ExecHook(("sleep", "1")))


def test_workload_exec_hook_not_runnable_here_names_the_field() -> None:
    app = app_container(lifecycle={"preStop": {"exec": {"command": ["/bin/nginx-quit"]}}})
    expected = (
        "^--manifest: spec.template.spec.containers[0].lifecycle.preStop.exec.command: "
        "/bin/nginx-quit not found on this machine$"
    )
    with pytest.raises(ChartError, match=expected.replace("[", r"\[").replace("]", r"\]")):
        workload_from_manifests(deployment(app, init=(sidecar_container("serve", **NATIVE),)), APP)


def test_workload_unknown_fields_are_listed_not_fatal() -> None:
    app = app_container(livenessProbe={"tcpSocket": {"port": 8080}}, lifecycle={"postStart": {}, **HOOK})
    objects = deployment(app, init=(sidecar_container("serve", **NATIVE),), hostNetwork=True)
    objects[0]["spec"]["paused"] = True
    workload = workload_from_manifests(objects, APP)
    assert workload.not_modelled == (
        "spec.paused",
        "spec.template.spec.hostNetwork",
        "spec.template.spec.containers[0].livenessProbe",
        "spec.template.spec.containers[0].lifecycle.postStart",
    )


def test_workload_more_than_one_workload_names_the_kinds() -> None:
    objects = [*native_deployment(), {"kind": "StatefulSet", "spec": {}}, {"kind": "Service"}]
    with pytest.raises(ChartError, match=r"^--manifest: expected one .*; found Deployment, StatefulSet$"):
        workload_from_manifests(objects, APP)


def test_workload_manifest_reads_every_document(tmp_path: Path) -> None:
    path = tmp_path / "web.yaml"
    path.write_text("kind: Service\n---\nkind: Deployment\nspec: {}\n")
    assert [obj["kind"] for obj in read_manifest(str(path))] == ["Service", "Deployment"]
    with pytest.raises(ChartError, match=r"^--manifest: cannot read"):
        read_manifest(str(tmp_path / "absent.yaml"))
