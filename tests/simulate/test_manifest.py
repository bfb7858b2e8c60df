"""One container's manifest read into the ContainerSpec the simulator runs: its hook and probes
with their ports resolved across the pod, its environment from literal values, the downward API
and rendered Secrets; what cannot be rehearsed is a ChartError naming the container."""

from __future__ import annotations

import re
import signal
from typing import Any

import pytest

from sidecar.simulate.helm import ChartError
from sidecar.simulate.manifest import container_spec, env_of, port_number, ports_of, secrets_of
from sidecar.simulate.podspec import (
    ADMIN_PORT,
    APP_PORT,
    HOST_PLACEHOLDER,
    POD_NAME_PLACEHOLDER,
    PROBE_DEFAULT_FAILURE_THRESHOLD,
    PROBE_DEFAULT_PERIOD_SECONDS,
    PROBE_DEFAULT_TIMEOUT_SECONDS,
    ExecHook,
    HttpGet,
    Probe,
    TcpSocket,
)
from tests.simulate.manifests import app_container

APP_COMMAND = ("my-app",)
# The app's ports (8080, named http) and the sidecar's admin port, as one pod's map.
POD_PORTS: dict[int | str, str] = {8080: APP_PORT, "http": APP_PORT, 9180: ADMIN_PORT}
SECRET = {
    "kind": "Secret",
    "metadata": {"name": "s"},
    "data": {"coded": "ZnJvbS1kYXRh"},  # base64 of from-data
    "stringData": {"plain": "from-string-data"},
}


def test_container_spec_resolves_the_hook_and_probe_ports_across_the_pod() -> None:
    app = app_container(
        lifecycle={
            "preStop": {"httpGet": {"path": "/prestop", "port": 9180, "httpHeaders": [{"name": "A", "value": "b"}]}}
        },
        readinessProbe={"httpGet": {"path": "/ready", "port": "http"}, "periodSeconds": 2, "failureThreshold": 1},
        startupProbe={"tcpSocket": {"port": 8080}, "initialDelaySeconds": 0.5},
    )
    spec = container_spec(app, APP_COMMAND, {"K": "v"}, POD_PORTS, serves_traffic=True)
    assert (spec.name, spec.argv, dict(spec.env), spec.serves_traffic, spec.reports) == (
        "web",
        APP_COMMAND,
        {"K": "v"},
        True,
        False,
    )
    assert spec.pre_stop == HttpGet(ADMIN_PORT, "/prestop", (("A", "b"),))
    assert spec.readiness == Probe(HttpGet(APP_PORT, "/ready"), period_seconds=2, failure_threshold=1)
    assert spec.startup == Probe(TcpSocket(APP_PORT), initial_delay_seconds=0.5)


def test_container_spec_probe_without_timings_gets_kubernetes_defaults() -> None:
    spec = container_spec(app_container(readinessProbe={"tcpSocket": {"port": "http"}}), APP_COMMAND, {}, POD_PORTS)
    assert spec.readiness is not None
    assert (spec.readiness.period_seconds, spec.readiness.timeout_seconds, spec.readiness.failure_threshold) == (
        PROBE_DEFAULT_PERIOD_SECONDS,
        PROBE_DEFAULT_TIMEOUT_SECONDS,
        PROBE_DEFAULT_FAILURE_THRESHOLD,
    )


def test_container_spec_exec_pre_stop_that_can_run_here_is_kept() -> None:
    app = app_container(lifecycle={"preStop": {"exec": {"command": ["sleep", "5"]}}})
    assert container_spec(app, APP_COMMAND, {}, POD_PORTS).pre_stop == ExecHook(("sleep", "5"))


def test_container_spec_exec_pre_stop_not_found_here_names_the_field() -> None:
    app = app_container(lifecycle={"preStop": {"exec": {"command": ["/bin/nginx-quit"]}}})
    field = "spec.template.spec.containers[0]"
    command = re.escape(f"{field}.lifecycle.preStop.exec.command")
    expected = f"^--chart: {command}: /bin/nginx-quit not found on this machine$"
    with pytest.raises(ChartError, match=expected):
        container_spec(app, APP_COMMAND, {}, POD_PORTS, field=field)


def test_container_spec_tcp_socket_pre_stop_raises() -> None:
    app = app_container(lifecycle={"preStop": {"tcpSocket": {"port": 8080}}})
    with pytest.raises(ChartError, match=r"container web: a preStop tcpSocket hook; only httpGet and exec"):
        container_spec(app, APP_COMMAND, {}, POD_PORTS)


@pytest.mark.parametrize(
    ("lifecycle", "expected"),
    [
        pytest.param({}, signal.SIGTERM, id="default"),
        pytest.param({"stopSignal": "SIGINT"}, signal.SIGINT, id="sigint"),
        pytest.param({"stopSignal": "SIGQUIT"}, signal.SIGQUIT, id="sigquit"),
    ],
)
def test_container_spec_stop_signal_is_lifecycle_stop_signal(
    lifecycle: dict[str, Any], expected: signal.Signals
) -> None:
    assert container_spec(app_container(lifecycle=lifecycle), APP_COMMAND, {}, POD_PORTS).stop_signal is expected


def test_container_spec_bad_stop_signal_names_the_field() -> None:
    app = app_container(lifecycle={"stopSignal": "SIGNOPE"})
    with pytest.raises(ChartError, match=r"^--chart: container web.lifecycle.stopSignal: 'SIGNOPE' is not a signal$"):
        container_spec(app, APP_COMMAND, {}, POD_PORTS)


def test_container_spec_https_hook_raises() -> None:
    app = app_container(lifecycle={"preStop": {"httpGet": {"path": "/", "port": 9180, "scheme": "HTTPS"}}})
    with pytest.raises(ChartError, match="scheme HTTPS; only HTTP is simulated"):
        container_spec(app, APP_COMMAND, {}, POD_PORTS)


@pytest.mark.parametrize(
    "probe",
    [
        pytest.param({"httpGet": {"path": "/ready", "port": "metrics"}}, id="unknown-name"),
        pytest.param({"tcpSocket": {"port": 7000}}, id="unknown-number"),
    ],
)
def test_container_spec_unresolvable_probe_port_raises(probe: dict[str, Any]) -> None:
    unknown = r"(is not a port of the pod|is not one of container web's own)"
    with pytest.raises(ChartError, match=rf"container web readinessProbe: port .* {unknown}"):
        container_spec(app_container(readinessProbe=probe), APP_COMMAND, {}, POD_PORTS)


def test_container_spec_exec_probe_raises() -> None:
    with pytest.raises(ChartError, match="startupProbe: only httpGet and tcpSocket"):
        container_spec(app_container(startupProbe={"exec": {"command": ["true"]}}), APP_COMMAND, {}, POD_PORTS)


def test_ports_of_maps_each_port_by_name_and_number_and_the_admin_port_apart() -> None:
    container = {"ports": [{"name": "http", "containerPort": 8080}, {"name": "admin", "containerPort": "9180"}]}
    assert ports_of(container, APP_PORT, admin_port=9180) == {
        8080: APP_PORT,
        "http": APP_PORT,
        9180: ADMIN_PORT,
        "admin": ADMIN_PORT,
    }


@pytest.mark.parametrize(
    ("value", "number"),
    [
        pytest.param(8080, 8080, id="int"),
        pytest.param("8080", 8080, id="digits"),
        pytest.param("http", None, id="name"),
        pytest.param(True, None, id="bool"),
        pytest.param(None, None, id="none"),
    ],
)
def test_port_number_reads_numbers_only(value: Any, number: int | None) -> None:
    assert port_number(value) == number


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        pytest.param({"fieldRef": {"fieldPath": "metadata.name"}}, POD_NAME_PLACEHOLDER, id="pod-name"),
        pytest.param({"fieldRef": {"fieldPath": "status.podIP"}}, HOST_PLACEHOLDER, id="pod-ip"),
        pytest.param({"fieldRef": {"fieldPath": "metadata.uid"}}, None, id="other-field-dropped"),
        pytest.param({"configMapKeyRef": {"name": "c", "key": "k"}}, None, id="config-map-dropped"),
        pytest.param({"secretKeyRef": {"name": "s", "key": "plain"}}, "from-string-data", id="string-data"),
        pytest.param({"secretKeyRef": {"name": "s", "key": "coded"}}, "from-data", id="data-decoded"),
        pytest.param({"secretKeyRef": {"name": "s", "key": "absent", "optional": True}}, None, id="optional-absent"),
    ],
)
def test_env_of_value_from(source: dict[str, Any], expected: str | None) -> None:
    env = env_of(app_container(env=[{"name": "VALUE", "valueFrom": source}]), secrets_of([SECRET]))
    assert env.get("VALUE") == expected


def test_env_of_missing_secret_key_raises_naming_it() -> None:
    app = app_container(env=[{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}}])
    with pytest.raises(ChartError, match="env TOKEN: Secret creds key token is not in the render"):
        env_of(app, {})


def test_secrets_of_string_data_wins_over_data() -> None:
    secret = {"kind": "Secret", "metadata": {"name": "s"}, "data": {"k": "ZnJvbS1kYXRh"}, "stringData": {"k": "plain"}}
    assert secrets_of([secret, {"kind": "ConfigMap", "data": {"k": "v"}}]) == {("s", "k"): "plain"}


def test_secrets_of_data_that_is_not_base64_raises() -> None:
    with pytest.raises(ChartError, match="Secret s key k: data is not base64"):
        secrets_of([{"kind": "Secret", "metadata": {"name": "s"}, "data": {"k": "not base64!"}}])
