"""The sidecar's report against the kubelet's view, in every mode and for every drain-end source,
with an app that outlives the evidence: its listener closes and its shutdown runs on past the
grace period (or it ignores SIGTERM), and the simulated kubelet SIGKILLs it. The report is the only
thing an operator sees in a cluster: it must never say clean for an app that was SIGKILLed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_simulate import CHART, DEMO, ROOT, chart_values, result_of, simulate

GRACE = 4  # seconds: the prestop delay (1), then 3 s for the drain, less the report reserve (1)
TIMING = ("--grace-period=4", "--prestop-delay=1", "--report-reserve=1")
UVICORN = (sys.executable, "-m", "uvicorn", "--host", "{host}", "--port", "{port}")
REPORTING_APP = (*UVICORN, "tests.e2e.slow_lifespan_app:app")  # SidecarMiddleware: reports on POST /drain
SILENT_APP = (*UVICORN, "tests.e2e.slow_lifespan_app:silent_app")  # tells the sidecar nothing
IGNORING_APP = (*DEMO, "--on-sigterm", "ignore")  # never closes its listener either
FAST = ("--propagation-delay", "0.5", "--rps", "20")
HOOK = {"preStop": {"httpGet": {"path": "/prestop", "port": 9180}}}
READYZ = {"httpGet": {"path": "/readyz", "port": 9180}, "periodSeconds": 1, "failureThreshold": 1}


def workload(app: dict[str, Any], sidecar_args: list[str], *, native: bool = False) -> dict[str, Any]:
    sidecar = {"name": "shutdown-sidecar", "args": ["serve", *TIMING, *sidecar_args],
               "ports": [{"containerPort": 9180}], "readinessProbe": READYZ}  # fmt: skip
    pod: dict[str, Any] = {"terminationGracePeriodSeconds": GRACE, "containers": [app]}
    if native:
        pod["initContainers"] = [{**sidecar, "restartPolicy": "Always"}]
    else:
        pod["containers"].append(sidecar)
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"replicas": 1, "template": {"spec": pod}}}  # fmt: skip


def app_container(*, hook: bool = True) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "app", "image": "web:1", "ports": [{"containerPort": 8080}]}
    return {**container, "lifecycle": HOOK} if hook else container


def rehearse_manifest(manifest: dict[str, Any], app: tuple[str, ...]) -> dict[str, Any]:
    completed = subprocess.run(
        [sys.executable, "-m", "sidecar", "simulate", "--json", "--manifest", "-", *FAST, "--", *app],
        input=json.dumps(manifest), capture_output=True, text=True, timeout=80, check=False, cwd=ROOT,
    )  # fmt: skip
    return the_pod(result_of(completed))


def the_pod(result: dict[str, Any], *, killed_by_kubelet: bool = True) -> dict[str, Any]:
    """The one pod's report, once the kubelet's view is checked: the app was SIGKILLed, by the
    kubelet at the grace period's end (or by the run-mode wrapper at its drain deadline, just before)."""
    (pod,) = result["pods"]
    assert ("app" in pod["sigkilled"]) is killed_by_kubelet, pod
    assert pod["containers"]["app"]["exit_status"] == 128 + 9
    report: dict[str, Any] = pod["report"]
    assert report["outcome"] != "clean", report
    return report


@pytest.mark.timeout(90)
def test_outcome_classic_app_port_only_listener_closed_is_not_clean() -> None:
    # Nothing in the pod can see the app's process: the listener closing is all there is.
    report = rehearse_manifest(workload(app_container(), ["--app-port=8080"]), SILENT_APP)
    assert (report["outcome"], report["drain_end_source"]) == ("unknown", "connections")
    assert report["margin_seconds"] is None
    assert "nothing saw the app finish" in report["outcome_reason"]


@pytest.mark.timeout(90)
def test_outcome_classic_app_port_with_a_reporting_app_waits_for_its_complete() -> None:
    # The app reports through the integrations: its listener closing does not end its drain.
    report = rehearse_manifest(workload(app_container(), ["--app-port=8080"]), REPORTING_APP)
    assert (report["outcome"], report["drain_end_source"]) == ("timeout", "deadline")
    assert "connections" in report["drain_end_observed"]
    assert report["app"]["complete_at"] is None
    assert "not reported complete" in report["outcome_reason"]


@pytest.mark.timeout(90)
def test_outcome_classic_app_report_only_is_a_timeout_when_complete_never_comes() -> None:
    report = rehearse_manifest(workload(app_container(), []), REPORTING_APP)
    assert (report["outcome"], report["drain_end_source"]) == ("timeout", "deadline")


@pytest.mark.timeout(90)
def test_outcome_classic_mode_watches_the_apps_process() -> None:
    # --mode classic as the chart wires it: the app's process is watched (--watch-pid here).
    report = the_pod(result_of(simulate("--json", "--mode", "classic", "--pods", "1", "--grace-period", str(GRACE),
                                        "--prestop-delay", "1", *FAST, "--", *SILENT_APP)))  # fmt: skip
    assert (report["outcome"], report["drain_end_source"]) == ("timeout", "deadline")
    assert "still running" in report["outcome_reason"]


@pytest.mark.timeout(90)
def test_outcome_chart_classic_mode_watches_the_apps_process(tmp_path: Path) -> None:
    values = chart_values(tmp_path, GRACE, 1, replicaCount=1, sidecar={"mode": "classic"})
    completed = simulate("--json", "--chart", str(CHART), "--values", str(values), *FAST, "--", *SILENT_APP)
    report = the_pod(result_of(completed))
    assert (report["outcome"], report["drain_end_source"]) == ("timeout", "deadline")
    assert "still running" in report["outcome_reason"]


@pytest.mark.timeout(90)
def test_outcome_native_sidecar_sigterm_after_the_sigkill_is_a_timeout() -> None:
    report = the_pod(result_of(simulate("--json", "--pods", "1", "--grace-period", str(GRACE), "--prestop-delay", "1",
                                        *FAST, "--", *SILENT_APP)))  # fmt: skip
    assert (report["outcome"], report["drain_end_source"]) == ("timeout", "deadline")


@pytest.mark.timeout(90)
def test_outcome_native_sidecar_whose_shutdown_began_at_its_sigterm_is_not_clean() -> None:
    # No preStop hook: the sidecar's first news is its SIGTERM, after the app's SIGKILL.
    manifest = workload(app_container(hook=False), ["--app-port=8080", "--native-sidecar=true"], native=True)
    report = rehearse_manifest(manifest, IGNORING_APP)
    assert (report["outcome"], report["drain_end_source"]) == ("unknown", "sidecar_sigterm")
    assert report["margin_seconds"] is None
    assert "no /prestop call" in report["outcome_reason"]


@pytest.mark.timeout(90)
def test_outcome_run_mode_app_killed_at_the_drain_deadline_is_a_timeout() -> None:
    completed = simulate("--json", "--mode", "run", "--pods", "1", "--grace-period", str(GRACE),
                         "--prestop-delay", "1", *FAST, "--", *SILENT_APP)  # fmt: skip
    report = the_pod(result_of(completed), killed_by_kubelet=False)
    assert (report["outcome"], report["drain_end_source"]) == ("timeout", "deadline")
