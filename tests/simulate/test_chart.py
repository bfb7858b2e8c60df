"""simulate --chart: the project's chart read into the pod the simulator runs, and the pod-level
reading rules (which container is the sidecar, in which mode, its flags rewritten for loopback) on
small hand-written manifests. Rendering is tested in test_helm, each container in test_manifest."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from sidecar.simulate.chart import load_chart_template, template_from_manifests
from sidecar.simulate.helm import ChartError
from sidecar.simulate.podspec import (
    ADMIN_PORT,
    ADMIN_PORT_PLACEHOLDER,
    APP_PORT,
    HOST_PLACEHOLDER,
    POD_NAME_PLACEHOLDER,
    PORT_PLACEHOLDER,
    TERMINATION_LOG_PLACEHOLDER,
    ContainerSpec,
    HttpGet,
    Mode,
    PodTemplate,
    Probe,
    TcpSocket,
)
from tests.simulate.manifests import CHART, HOOK, NATIVE, app_container, deployment, sidecar_container

APP_COMMAND = ("my-app", "--listen", PORT_PLACEHOLDER)
SIDECAR_PREFIX = (sys.executable, "-m", "sidecar")


def chart_template(tmp_path: Path, values: dict[str, Any] | None = None) -> PodTemplate:
    values_file = None
    if values is not None:
        values_file = tmp_path / "values.yaml"
        values_file.write_text(yaml.safe_dump(values))
    return load_chart_template(CHART, values_file, APP_COMMAND)


def the_sidecar(template: PodTemplate) -> ContainerSpec:
    (sidecar,) = [c for c in template.all_containers if c.reports]
    return sidecar


def the_app(template: PodTemplate) -> ContainerSpec:
    (app,) = [c for c in template.all_containers if c.serves_traffic]
    return app


# --- the project's chart, rendered ---------------------------------------------------------------


def test_chart_default_values_run_the_sidecar_native_next_to_the_app(tmp_path: Path) -> None:
    template = chart_template(tmp_path)
    assert template.mode is Mode.NATIVE
    assert template.grace_period_seconds == 30
    (sidecar,) = template.sidecars
    assert sidecar.name == "shutdown-sidecar"
    assert sidecar.reports
    assert not sidecar.serves_traffic
    (app,) = template.containers
    assert app.name == "app"
    assert app.argv == APP_COMMAND
    assert app.serves_traffic
    assert not app.reports
    # The hook's port is the number 9180, declared by the sidecar container: resolved across the pod.
    # The admin token is on by default: the hook carries it, and the sidecar reads the same one.
    token = sidecar.env["SIDECAR_ADMIN_TOKEN"]
    assert token
    assert app.pre_stop == HttpGet(ADMIN_PORT, "/prestop", (("Authorization", f"Bearer {token}"),))
    assert app.readiness is None  # the chart's app.readinessProbe is empty by default


def test_chart_default_values_keep_the_sidecar_probes(tmp_path: Path) -> None:
    sidecar = the_sidecar(chart_template(tmp_path))
    assert sidecar.readiness == Probe(HttpGet(ADMIN_PORT, "/readyz"), period_seconds=1, failure_threshold=1)
    assert sidecar.startup == Probe(HttpGet(ADMIN_PORT, "/startupz"), period_seconds=1, failure_threshold=30)


@pytest.mark.parametrize(
    "argument",
    [
        pytest.param(f"--port={ADMIN_PORT_PLACEHOLDER}", id="admin-port"),
        pytest.param(f"--app-port={PORT_PLACEHOLDER}", id="app-port"),
        pytest.param(f"--host={HOST_PLACEHOLDER}", id="host-added"),
        pytest.param(f"--termination-log={TERMINATION_LOG_PLACEHOLDER}", id="termination-log-added"),
        pytest.param("--native-sidecar=true", id="native-flag-kept"),
        pytest.param("--grace-period=30", id="grace-kept"),
        pytest.param("--prestop-delay=auto", id="prestop-delay-kept"),
        pytest.param("--prestop-delay-max=9", id="prestop-delay-max-kept"),
    ],
)
def test_chart_sidecar_argv_has(tmp_path: Path, argument: str) -> None:
    assert argument in the_sidecar(chart_template(tmp_path)).argv


def test_chart_sidecar_argv_runs_this_python_without_the_pod_port(tmp_path: Path) -> None:
    argv = the_sidecar(chart_template(tmp_path)).argv
    assert argv[:4] == (*SIDECAR_PREFIX, "serve")
    assert not [arg for arg in argv if "9180" in arg or "8080" in arg]


def test_chart_sidecar_env_answers_the_downward_api_locally(tmp_path: Path) -> None:
    # The admin token is on by default; its value is checked with the hook above.
    env = {
        name: value
        for name, value in the_sidecar(chart_template(tmp_path)).env.items()
        if name != "SIDECAR_ADMIN_TOKEN"
    }
    assert env == {
        "POD_NAME": POD_NAME_PLACEHOLDER,
        "POD_NAMESPACE": "default",
        "NODE_NAME": "localhost",
        "SIDECAR_WORKLOAD": "simulate-shutdown-sidecar",
    }


def test_chart_classic_mode_puts_the_sidecar_after_the_app(tmp_path: Path) -> None:
    template = chart_template(tmp_path, {"sidecar": {"mode": "classic"}})
    assert template.mode is Mode.CLASSIC
    assert template.sidecars == ()
    assert [c.name for c in template.containers] == ["app", "shutdown-sidecar"]
    assert template.containers[-1].reports
    assert "--native-sidecar=true" not in template.containers[-1].argv


def test_chart_admin_token_reaches_the_hook_and_the_sidecar_env(tmp_path: Path) -> None:
    template = chart_template(tmp_path, {"sidecar": {"adminToken": {"enabled": True, "value": "s3cret"}}})
    assert the_app(template).pre_stop == HttpGet(ADMIN_PORT, "/prestop", (("Authorization", "Bearer s3cret"),))
    assert the_sidecar(template).env["SIDECAR_ADMIN_TOKEN"] == "s3cret"  # read from the rendered Secret


def test_chart_app_values_reach_the_app(tmp_path: Path) -> None:
    app_values = {
        "env": [{"name": "GREETING", "value": "hello"}],
        "readinessProbe": {"httpGet": {"path": "/ready", "port": "http"}, "periodSeconds": 2},
    }
    template = chart_template(tmp_path, {"terminationGracePeriodSeconds": 45, "app": app_values})
    app = the_app(template)
    assert template.grace_period_seconds == 45
    # Besides the user's own, the chart tells the app where its sidecar is and the token /drain needs.
    assert app.env == {
        "GREETING": "hello",
        "SHUTDOWN_SIDECAR_URL": "http://127.0.0.1:9180",
        "SHUTDOWN_SIDECAR_TOKEN": the_sidecar(template).env["SIDECAR_ADMIN_TOKEN"],
    }
    assert app.readiness == Probe(HttpGet(APP_PORT, "/ready"), period_seconds=2)
    assert "--grace-period=45" in the_sidecar(template).argv


# --- reading hand-written manifests --------------------------------------------------------------


def test_template_without_sidecar_is_the_baseline() -> None:
    app = app_container(readinessProbe={"tcpSocket": {"port": "http"}})
    template = template_from_manifests(deployment(app), APP_COMMAND)
    assert template == PodTemplate(
        Mode.NONE,
        30.0,  # Kubernetes' default: the manifest has no terminationGracePeriodSeconds
        (),
        (ContainerSpec("web", APP_COMMAND, readiness=Probe(TcpSocket(APP_PORT)), serves_traffic=True),),
    )


def test_template_two_app_containers_raise_with_their_names() -> None:
    objects = deployment(app_container("web"), app_container("worker"), init=(sidecar_container("serve", **NATIVE),))
    with pytest.raises(ChartError, match="web, worker"):
        template_from_manifests(objects, APP_COMMAND)


def test_template_two_token_flags_are_rewritten() -> None:
    sidecar = sidecar_container(
        "serve", "--port", "9190", "--app-port", "8080", "--host", "0.0.0.0", "--grace-period", "20", **NATIVE
    )
    sidecar["ports"] = [{"name": "admin", "containerPort": 9190}]
    app = app_container(lifecycle={"preStop": {"httpGet": {"path": "/prestop", "port": 9190}}})
    template = template_from_manifests(deployment(app, init=(sidecar,)), APP_COMMAND)
    assert template.sidecars[0].argv == (
        *SIDECAR_PREFIX,
        "serve",
        f"--termination-log={TERMINATION_LOG_PLACEHOLDER}",
        f"--port={ADMIN_PORT_PLACEHOLDER}",
        f"--app-port={PORT_PLACEHOLDER}",
        "--host={host}",
        "--grace-period",
        "20",
    )
    assert template.containers[0].pre_stop == HttpGet(ADMIN_PORT, "/prestop")


@pytest.mark.parametrize(
    ("sidecar", "subcommand"),
    [
        pytest.param({"name": "shutdown-sidecar"}, "serve", id="by-name-image-cmd"),
        pytest.param({"name": "admin", "args": ["serve"]}, "serve", id="by-args"),
        pytest.param(
            {"name": "admin", "command": ["/opt/sidecar/bin/shutdown-sidecar", "serve"]}, "serve", id="by-command"
        ),
    ],
)
def test_template_sidecar_is_found_by_name_or_arguments(sidecar: dict[str, Any], subcommand: str) -> None:
    template = template_from_manifests(deployment(app_container(lifecycle=HOOK), sidecar), APP_COMMAND)
    assert template.mode is Mode.CLASSIC
    assert template.containers[1].name == sidecar["name"]
    assert template.containers[1].argv[3] == subcommand


def test_template_sidecar_with_another_program_raises() -> None:
    sidecar = {"name": "shutdown-sidecar", "command": ["sh", "-c", "shutdown-sidecar serve"]}
    with pytest.raises(ChartError, match="is not the shutdown-sidecar entrypoint"):
        template_from_manifests(deployment(app_container(), sidecar), APP_COMMAND)


def test_template_plain_init_containers_are_left_out() -> None:
    migrate = {"name": "migrate", "image": "web:1", "command": ["migrate"]}
    objects = deployment(app_container(lifecycle=HOOK), init=(migrate, sidecar_container("serve", **NATIVE)))
    template = template_from_manifests(objects, APP_COMMAND)
    assert [c.name for c in template.all_containers] == ["shutdown-sidecar", "web"]


def test_template_run_wrapper_replaces_the_apps_command() -> None:
    wrapper = app_container(
        command=["shutdown-sidecar", "run", "--app-port=8080", "--"],
        args=["nginx"],
        lifecycle={"preStop": {"httpGet": {"path": "/prestop", "port": 9180}}},
        readinessProbe={"httpGet": {"path": "/readyz", "port": 9180}},
    )
    (container,) = template_from_manifests(deployment(wrapper), APP_COMMAND).containers
    assert container.argv == (
        *SIDECAR_PREFIX,
        "run",
        "--host={host}",
        f"--port={ADMIN_PORT_PLACEHOLDER}",
        f"--termination-log={TERMINATION_LOG_PLACEHOLDER}",
        f"--app-port={PORT_PLACEHOLDER}",
        "--",
        *APP_COMMAND,
    )
    assert (container.serves_traffic, container.reports) == (True, True)
    assert container.pre_stop == HttpGet(ADMIN_PORT, "/prestop")
    assert container.readiness is not None
    assert container.readiness.action == HttpGet(ADMIN_PORT, "/readyz")


def test_template_without_workload_raises() -> None:
    with pytest.raises(ChartError, match="no Deployment, StatefulSet or DaemonSet"):
        template_from_manifests([{"kind": "Service"}], APP_COMMAND)


@pytest.mark.parametrize(
    "watch",
    [
        pytest.param({"args": ["serve", "--watch-process=uvicorn main:app"]}, id="flag"),
        pytest.param({"args": ["serve", "--watch-process", "uvicorn main:app"]}, id="flag-and-value"),
        pytest.param({"args": ["serve"], "env": [{"name": "SIDECAR_WATCH_PROCESS", "value": "uvicorn"}]}, id="env"),
    ],
)
def test_template_classic_process_watch_in_a_shared_process_namespace_is_given_the_apps_pid(
    watch: dict[str, Any],
) -> None:
    sidecar = {"name": "shutdown-sidecar", **watch}
    objects = deployment(app_container(lifecycle=HOOK), sidecar, shareProcessNamespace=True)
    argv = template_from_manifests(objects, APP_COMMAND).containers[1].argv
    assert argv[-1] == "--watch-pid={app_pid}"
    assert not [arg for arg in argv if "watch-process" in arg or "uvicorn" in arg]
    assert "SIDECAR_WATCH_PROCESS" not in template_from_manifests(objects, APP_COMMAND).containers[1].env


def test_template_process_watch_without_a_shared_process_namespace_is_left_out() -> None:
    # In the cluster the sidecar would see no process of the app's: its other sources decide.
    sidecar = sidecar_container("serve", "--watch-process=uvicorn", "--app-port=8080")
    argv = template_from_manifests(deployment(app_container(lifecycle=HOOK), sidecar), APP_COMMAND).containers[1].argv
    assert not [arg for arg in argv if "watch" in arg]
    assert "--app-port={port}" in argv


def test_template_process_watch_of_a_sidecar_started_before_the_app_raises() -> None:
    objects = deployment(
        app_container(lifecycle=HOOK), init=(sidecar_container("serve", "--watch-pid=7", **NATIVE),),
        shareProcessNamespace=True,
    )  # fmt: skip
    with pytest.raises(ChartError, match=r"initContainers\[0\]: its process watch is rehearsed only for a classic"):
        template_from_manifests(objects, APP_COMMAND)
