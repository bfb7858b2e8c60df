"""The chart's security defaults: the admin token (on, stable, never printed), the service account
(no token mounted), the NetworkPolicy, the `helm test` client, and read-only root filesystems that
hold: each default container's process, run here, writes nowhere but its kubelet-provided paths."""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import helm_python as helm
import httpx
import pytest

from tests.charts.helm import CHART, RELEASE, container, kinds, manifests, pod_containers, render
from tests.e2e.process_tree import end_session
from tests.e2e.sidecar_process import SidecarProcess, wait_until
from tests.e2e.test_run import free_port

AUDIT = Path(__file__).resolve().parent / "write_audit.py"
HELM_TEST = CHART / "files" / "helm-test.py"


def hook_header(objects: dict[str, dict[str, Any]]) -> str:
    _, app = container(objects["Deployment"], "app")
    (header,) = app["lifecycle"]["preStop"]["httpGet"]["httpHeaders"]
    assert header["name"] == "Authorization"
    value: str = header["value"]
    return value.removeprefix("Bearer ")


def test_security_token_is_on_by_default_and_the_secret_matches_the_hook() -> None:
    objects = kinds(manifests(render()))
    token = hook_header(objects)
    assert len(token) == 64
    assert base64.b64decode(objects["Secret"]["data"]["token"]).decode() == token


def test_security_derived_token_is_stable_across_renders_and_differs_between_releases() -> None:
    first, second = (hook_header(kinds(manifests(render()))) for _ in range(2))
    assert first == second
    with helm.Chart.load(CHART) as loaded:
        other = hook_header(kinds(manifests(loaded.render(None, name="api", namespace="shop"))))
        elsewhere = hook_header(kinds(manifests(loaded.render(None, name=RELEASE, namespace="staging"))))
    assert len({first, other, elsewhere}) == 3


def test_security_token_value_wins_and_its_checksum_rolls_the_pods() -> None:
    def annotation(value: str) -> str:
        objects = kinds(manifests(render({"sidecar": {"adminToken": {"value": value}}})))
        assert hook_header(objects) == value
        checksum: str = objects["Deployment"]["spec"]["template"]["metadata"]["annotations"]["checksum/admin-token"]
        return checksum

    assert annotation("a" * 32) != annotation("b" * 32)


def test_security_token_is_never_printed_in_notes() -> None:
    for values in [None, {"sidecar": {"adminToken": {"value": "s3cret-token-value"}}}]:
        rendered = render(values)
        token = hook_header(kinds(manifests(rendered)))
        notes = next(text for path, text in rendered.items() if path.endswith("NOTES.txt"))
        assert token not in notes
        assert "admin-token" in notes  # it names the Secret instead


def test_security_pods_mount_no_service_account_token_and_have_their_own_account() -> None:
    objects = kinds(manifests(render()))
    spec = objects["Deployment"]["spec"]["template"]["spec"]
    assert spec["automountServiceAccountToken"] is False
    assert spec["serviceAccountName"] == objects["ServiceAccount"]["metadata"]["name"]
    assert objects["ServiceAccount"]["automountServiceAccountToken"] is False


@pytest.mark.parametrize(
    ("values", "account", "created"),
    [
        pytest.param({"serviceAccount": {"create": False}}, "default", False, id="not-created"),
        pytest.param({"serviceAccount": {"create": False, "name": "ops"}}, "ops", False, id="existing"),
        pytest.param({"serviceAccount": {"name": "web-sa"}}, "web-sa", True, id="created-named"),
        pytest.param({"serviceAccountName": "legacy"}, "legacy", False, id="deprecated-0.1.0-name"),
    ],
)
def test_security_service_account_choices(values: dict[str, Any], account: str, created: bool) -> None:
    objects = kinds(manifests(render(values)))
    assert objects["Deployment"]["spec"]["template"]["spec"]["serviceAccountName"] == account
    assert ("ServiceAccount" in objects) is created


def test_security_network_policy_admits_the_admin_port_only_from_its_sources() -> None:
    values = {"networkPolicy": {"enabled": True, "admin": {"nodeCIDRs": ["10.0.0.0/16"], "monitoringNamespace": "obs"}}}
    policy = kinds(manifests(render(values)))["NetworkPolicy"]
    app_rule, admin_rule = policy["spec"]["ingress"]
    assert app_rule == {"ports": [{"port": 8080, "protocol": "TCP"}]}  # no `from`: anyone
    assert admin_rule["ports"] == [{"port": 9180, "protocol": "TCP"}]
    assert admin_rule["from"] == [
        {"ipBlock": {"cidr": "10.0.0.0/16"}},
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "obs"}}},
    ]


# The sidecar's own settings come from the test; coverage's subprocess measurement would write its
# data file, which is the test run's write, not the image's.
NOT_INHERITED = ("SIDECAR_", "COVERAGE_", "COV_CORE_")


def audited_writes(log: Path, module: str, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, str(AUDIT), str(log), module, *args],
        env={**{k: v for k, v in os.environ.items() if not k.startswith(NOT_INHERITED)}, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # the caller's end_session kills the session
    )


def test_security_default_containers_with_read_only_roots_write_only_where_they_may(tmp_path: Path) -> None:
    """Every default container with readOnlyRootFilesystem runs its rendered process here under an audit
    hook that records writes; each written path must be a volume mount of that container or a path the
    kubelet provides writable (the termination log). The image sets PYTHONDONTWRITEBYTECODE=1, as here."""
    deployment = kinds(manifests(render()))["Deployment"]
    image_env = {"PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1"}
    checked = []
    for _, spec in pod_containers(deployment):
        if not spec["securityContext"].get("readOnlyRootFilesystem"):
            continue
        mounts = [m["mountPath"] for m in spec.get("volumeMounts", [])]
        log = tmp_path / f"{spec['name']}.log"
        port = free_port()
        if spec["name"] == "shutdown-sidecar":
            termination_log = tmp_path / "termination-log"  # the kubelet's /dev/termination-log
            args = ["--port=" + str(port) if a.startswith("--port=") else a for a in spec["args"]]
            env = {**image_env, "SIDECAR_HOST": "127.0.0.1", "SIDECAR_TERMINATION_LOG": str(termination_log)}
            process = audited_writes(log, "sidecar", args, env)
            allowed = [str(termination_log)]
            url = f"http://127.0.0.1:{port}/readyz"
        else:
            assert spec["command"] == ["/opt/sidecar/bin/python", "-m", "sidecar.demo"], "an app this test knows"
            args = ["--host=127.0.0.1" if a.startswith("--host=") else a for a in spec["args"]]
            args = [f"--port={port}" if a.startswith("--port=") else a for a in args]
            process = audited_writes(log, "sidecar.demo", args, image_env)
            allowed = []
            url = f"http://127.0.0.1:{port}/"
        try:
            wait_until(lambda u=url: reachable(u), 15, interval=0.05, what=f"{spec['name']} to answer")
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=20) == 0
        finally:
            end_session(process)
        writes = set(log.read_text().splitlines()) if log.exists() else set()
        if spec["name"] == "shutdown-sidecar":
            assert writes == {str(termination_log)}  # the hook was active: the report was written there
        stray = [w for w in writes if not any(w == a or w.startswith(a.rstrip("/") + "/") for a in allowed + mounts)]
        assert stray == [], f"{spec['name']} writes outside its writable paths"
        checked.append(spec["name"])
    assert sorted(checked) == ["app", "shutdown-sidecar"]


def reachable(url: str) -> bool:
    try:
        httpx.get(url, timeout=1)
    except httpx.TransportError:
        return False
    return True


def test_security_write_audit_sees_a_write(tmp_path: Path) -> None:
    # Guards the test above: the hook does record a file opened for writing.
    log = tmp_path / "writes.log"
    target = tmp_path / "written.txt"
    script = tmp_path / "writer.py"
    script.write_text(f"open({str(target)!r}, 'w').close()\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    subprocess.run([sys.executable, str(AUDIT), str(log), "writer"], env=env, timeout=30, check=True)
    assert str(target) in log.read_text().splitlines()


def test_security_helm_test_client_passes_on_a_ready_sidecar_and_fails_on_a_shutting_down_one() -> None:
    sidecar = SidecarProcess.serve("--grace-period=20", "--prestop-delay=10")
    try:
        check = [sys.executable, "-c", HELM_TEST.read_text(), "localhost", str(sidecar.port)]
        passed = subprocess.run(check, capture_output=True, text=True, timeout=30, check=False)
        assert passed.returncode == 0, passed.stdout + passed.stderr
        assert "/readyz 200" in passed.stdout
        assert "/livez 200" in passed.stdout
        sidecar.send_signal(signal.SIGTERM)  # t0: readiness answers 503 from now on
        wait_until(lambda: sidecar.get("/readyz").status_code == 503, 5, what="readiness to fail")
        failed = subprocess.run(check, capture_output=True, text=True, timeout=30, check=False)
        assert failed.returncode == 1
        assert "/readyz: HTTP Error 503" in failed.stderr
    finally:
        sidecar.close()
