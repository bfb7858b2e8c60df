"""`shutdown-sidecar simulate` end to end: the real command, its real pods and load, read back
through --json and the exit status."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.process_tree import end_session
from tests.e2e.sidecar_process import wait_until
from tests.simulate.waiting import is_running

ROOT = Path(__file__).resolve().parent.parent.parent
CHART = ROOT / "charts" / "shutdown-sidecar"
DEMO = (sys.executable, "-m", "sidecar.demo", "--port", "{port}")


def simulate(*args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sidecar", "simulate", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=ROOT,
    )


def chart_values(tmp_path: Path, grace: int, prestop: float, **more: object) -> Path:
    """A values file for --chart: the timing (1 s report reserve, drain expected to fit) and `more`."""
    values = tmp_path / "values.yaml"
    timing = {"terminationGracePeriodSeconds": grace, "prestopDelaySeconds": prestop, "reportReserveSeconds": 1,
              "expectedDrainSeconds": grace - prestop - 1}  # fmt: skip
    values.write_text(json.dumps({**timing, **more}))  # JSON is YAML
    return values


def result_of(completed: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert completed.stdout, completed.stderr
    result: dict[str, Any] = json.loads(completed.stdout)
    return result


@pytest.mark.timeout(120)
def test_simulate_default_rehearsal_drops_nothing_with_the_sidecar_and_requests_without_it() -> None:
    with_sidecar = simulate("--json")
    assert with_sidecar.returncode == 0, with_sidecar.stderr
    result = result_of(with_sidecar)
    assert result["verdict"] == "pass"
    assert result["mode"] == "native"
    assert result["requests"]["failed"] == 0
    assert result["requests"]["sent"] > 100
    # The default clients reuse keep-alive connections behind a connection-level balancer.
    load = result["load"]
    assert (load["client"], load["balancer"], load["connections"]) == ("pooled", "l4", 16)
    assert load["requests_on_reused_connections"] > result["requests"]["sent"] / 2
    assert load["connections_opened"] < result["requests"]["sent"]
    # Traffic reached the pods during the prestop delay: the hold is what kept it from failing.
    assert result["requests"]["by_phase"]["prestop"]["sent"] > 0
    assert len(result["pods"]) == 3
    for pod in result["pods"]:
        assert pod["within_grace"]
        assert pod["report"]["outcome"] == "clean"
        assert pod["report"]["drain_end_source"] == "sidecar_sigterm"
        # The sidecar's default hold, auto, within simulate's default maximum (8 s of the 10 s grace period).
        hold = pod["report"]["hold"]
        assert (hold["mode"], hold["maximum_seconds"]) == ("auto", 8.0)
        assert hold["released_by"] in ("quiet", "maximum")
        assert pod["containers"]["app"]["pre_stop_hook"]["result"] == "200"
        # A native sidecar is signalled only once the app container has exited.
        sidecar, app = pod["containers"]["shutdown-sidecar"], pod["containers"]["app"]
        assert sidecar["sigterm_after_seconds"] >= app["exited_after_seconds"]

    baseline = simulate("--json", "--mode", "none")
    assert baseline.returncode == 1, baseline.stderr
    result = result_of(baseline)
    assert result["verdict"] == "fail"
    assert result["requests"]["failed"] > 0
    # The app stopped listening while the balancer still sent it traffic. A request written on a
    # keep-alive connection in the instant before the deletion counts as sent while running, and
    # can meet the stop too (the keep-alive race; once in CI, 1 of 41 under load).
    late = result["requests"]["by_phase"]["drain"]["failed"] + result["requests"]["by_phase"]["exited"]["failed"]
    assert late >= result["requests"]["failed"] - 2
    assert result["requests"]["by_phase"]["exited"]["failed"] > 0
    assert all(pod["report"] is None for pod in result["pods"])


@pytest.mark.timeout(60)
def test_simulate_an_app_whose_drain_overruns_the_grace_period_fails_with_its_sigkill() -> None:
    app = (*DEMO, "--cleanup", "30")  # closes its listener at SIGTERM, then takes 30 s to exit
    completed = simulate("--pods", "1", "--grace-period", "3", "--prestop-delay", "1", "--propagation-delay", "0.5",
                         "--", *app)  # fmt: skip
    assert completed.returncode == 1, completed.stderr
    assert "verdict: FAIL" in completed.stdout
    assert "app was SIGKILLed" in completed.stdout
    bar = next(line for line in completed.stdout.splitlines() if line.lstrip().startswith("old-1"))
    assert bar.rstrip().split("|")[1].endswith("X")  # the SIGKILL drawn at the end of the grace period
    assert "SIGKILL" in completed.stderr  # and announced as it happened

    as_json = simulate("--json", "--pods", "1", "--grace-period", "3", "--prestop-delay", "1",
                       "--propagation-delay", "0.5", "--", *app)  # fmt: skip
    pod = result_of(as_json)["pods"][0]
    assert pod["sigkilled"] == ["app"]
    assert not pod["within_grace"]
    assert pod["containers"]["app"]["exit_status"] == 128 + 9
    # The sidecar waited for the app's exit (its SIGTERM), so it saw the overrun: not clean.
    assert pod["report"]["outcome"] == "timeout"


@pytest.mark.timeout(60)
def test_simulate_an_app_that_ignores_sigterm_is_said_to_be_still_running_and_killed_not_drained() -> None:
    app = (*DEMO, "--on-sigterm", "ignore")
    completed = simulate("--pods", "1", "--grace-period", "3", "--prestop-delay", "1", "--propagation-delay", "0.5",
                         "--", *app)  # fmt: skip
    assert completed.returncode == 1, completed.stderr
    facts = next(line for line in completed.stdout.splitlines() if "app exit status" in line)
    assert "app drained" not in facts
    assert "app still running" in facts
    assert "after its SIGTERM: SIGKILLed at 3." in facts
    assert "app exit status 137" in facts


@pytest.mark.timeout(60)
def test_simulate_takes_the_pod_from_the_projects_chart(tmp_path: Path) -> None:
    values = chart_values(tmp_path, 6, 2.5, replicaCount=1)
    # An app that takes 2 s to listen, with no readiness probe of its own (the chart's default):
    # the sidecar's readiness (its --app-port check) keeps the new pod out until it listens.
    slow_app = f"sleep 2; exec {sys.executable} -m sidecar.demo --port $PORT"
    completed = simulate("--json", "--chart", str(CHART), "--values", str(values), "--propagation-delay", "1.5",
                         "--", "sh", "-c", slow_app)  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    result = result_of(completed)
    assert result["mode"] == "native"
    assert result["settings"]["grace_period_seconds"] == 6
    assert result["settings"]["prestop_delay_seconds"] == 2.5
    (pod,) = result["pods"]
    assert pod["grace_period_seconds"] == 6
    assert pod["sidecar_container"] == "shutdown-sidecar"
    assert pod["report"]["prestop_delay_seconds"] == 2.5  # the chart's flags reached the sidecar
    assert pod["report"]["grace_period_seconds"] == 6
    hook = pod["containers"]["app"]["pre_stop_hook"]
    assert hook["result"] == "200"
    # Held for the chart's prestop delay (less a timer's granularity); the upper bound leaves a
    # loaded machine room and still tells the delay from the 6 s grace period.
    assert 2.49 <= hook["returned_after_seconds"] < 4.0
    assert result["requests"]["failed"] == 0


@pytest.mark.timeout(90)
def test_simulate_chart_rolls_out_the_replicas_and_strategy_of_its_values(tmp_path: Path) -> None:
    strategy = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}}
    values = chart_values(tmp_path, 4, 1, replicaCount=5, strategy=strategy)
    completed = simulate("--json", "--chart", str(CHART), "--values", str(values), "--propagation-delay", "0.5",
                         "--rps", "20", timeout=80)  # fmt: skip
    result = result_of(completed)
    assert result["settings"]["pods"] == 5
    assert result["settings"]["strategy"] == "Deployment RollingUpdate: maxSurge 0, maxUnavailable 1"
    assert len(result["pods"]) == 5
    (not_modelled,) = [line for line in completed.stderr.splitlines() if "not modelled:" in line]
    assert "spec.template.spec.securityContext" in not_modelled


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        pytest.param(("--grace-period", "3", "--prestop-delay", "5"), "--grace-period", id="grace-shorter-than-delay"),
        pytest.param(("--",), "--", id="missing-app-command"),
        pytest.param(("--", "no-such-app-anywhere"), "APP CMD", id="app-not-found"),
        pytest.param(("--rps", "0"), "--rps", id="no-load"),
        pytest.param(("--chart", str(CHART), "--mode", "none"), "--mode", id="chart-and-mode"),
    ],
)
def test_simulate_bad_input_exits_2_with_one_line_naming_it(args: tuple[str, ...], flag: str) -> None:
    completed = simulate(*args, timeout=20)
    assert completed.returncode == 2
    assert completed.stdout == ""
    lines = completed.stderr.splitlines()
    assert len(lines) == 1, completed.stderr
    assert lines[0].startswith(f"shutdown-sidecar simulate: error: {flag}:")


@pytest.mark.timeout(30)
def test_simulate_an_app_that_cannot_listen_on_its_port_exits_2() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        # A fixed port instead of {port}: here it is taken, as it would be for a second pod.
        # On 127.0.0.1 as the port taken there (the pod's own address would not clash: pod IPs).
        app = (sys.executable, "-m", "sidecar.demo", "--host", "127.0.0.1", "--port", str(port))
        completed = simulate("--pods", "1", "--", *app, timeout=25)
    assert completed.returncode == 2
    error = completed.stderr.splitlines()[-1]
    assert error.startswith("shutdown-sidecar simulate: error: old-1: app exited with status 1 while starting")
    assert "address already in use" in error
    assert "{port}" in error  # the hint: give the port as {port}


def pids_in_logs(logs: Path) -> list[int]:
    """Every pid a demo app or sidecar logged on start-up (JSON lines) under a --logs directory."""
    pids = []
    for log in logs.glob("*/*.log"):
        for line in log.read_text().splitlines():
            if line.startswith("{"):
                fields = json.loads(line)
                pid = fields.get("pid") or fields.get("app_pid")
                if pid is not None:
                    pids.append(int(pid))
    return pids


@pytest.mark.timeout(60)
def test_simulate_interrupted_exits_130_and_leaves_no_pod_running(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    process = subprocess.Popen(
        [sys.executable, "-m", "sidecar", "simulate", "--mode", "run", "--logs", str(logs)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        start_new_session=True,
    )
    try:
        assert process.stderr is not None
        wait_until(lambda: "pods serving" in process.stderr.readline(), timeout=30, what="the pods to serve")  # type: ignore[union-attr]
        started = pids_in_logs(logs)
        assert len(started) >= 3  # run mode logs the app's pid: one per pod
        assert all(is_running(pid) for pid in started)
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=15) == 130
        assert process.stdout is not None
        assert process.stdout.read() == ""
        assert "interrupted by SIGINT" in process.stderr.read()
        assert not [pid for pid in started if is_running(pid)]
    finally:
        end_session(process)
        process.communicate()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("mode", ["classic", "run"])
def test_simulate_classic_and_run_modes_drop_nothing_and_follow_their_own_order(mode: str) -> None:
    completed = simulate("--json", "--mode", mode, "--pods", "1", "--grace-period", "5", "--prestop-delay", "1.5",
                         "--propagation-delay", "1")  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    result = result_of(completed)
    assert result["requests"]["failed"] == 0
    (pod,) = result["pods"]
    assert pod["report"]["outcome"] == "clean"
    app = pod["containers"]["app"]
    assert 1.49 <= app["sigterm_after_seconds"] < 3.0  # after the hook returned: the prestop delay
    if mode == "classic":
        # A classic sidecar has no hook: the kubelet signals it at the deletion, while the app's hook
        # is still held, so before the app's own SIGTERM.
        assert pod["containers"]["shutdown-sidecar"]["sigterm_after_seconds"] < app["sigterm_after_seconds"]
        assert pod["report"]["trigger"] in ("signal", "prestop")
    else:
        assert list(pod["containers"]) == ["app"]  # the wrapper is the app container
    # Classic as the chart wires it: the sidecar watches the app's process, so it sees its exit.
    assert pod["report"]["drain_end_source"] == "process_exit"


@pytest.mark.timeout(60)
def test_simulate_an_app_that_crashes_before_its_deletion_fails_the_rehearsal() -> None:
    # The app dies 3 s after it starts: before the rollout deletes its pod.
    completed = simulate("--json", "--mode", "none", "--pods", "1", "--",
                         "timeout", "-s", "KILL", "3", *DEMO)  # fmt: skip
    assert completed.returncode == 1, completed.stderr
    reasons = result_of(completed)["reasons"]
    assert any(reason.startswith("old-1: app exited with status") for reason in reasons), reasons
    assert "before its pod was deleted" in completed.stderr


# The demo app that dies at its SIGTERM, told nothing by its sidecar (an empty URL: no events).
# 200 ms per request keeps requests in flight on the connections still pinned to each old pod
# when it dies, so the failure does not hang on when one happens to arrive.
EXITING_WITHOUT_EVENTS = (*DEMO, "--on-sigterm", "exit", "--latency", "0.2", "--sidecar-url", "")


@pytest.mark.timeout(60)
def test_simulate_pooled_l4_fails_an_app_that_exits_at_sigterm_while_connections_stay_on_it() -> None:
    completed = simulate("--json", "--pods", "2", "--", *EXITING_WITHOUT_EVENTS)
    assert completed.returncode == 1, completed.stderr
    result = result_of(completed)
    requests = result["requests"]
    assert requests["failed"] > 0
    # Only requests on connections that stayed on a deleted pod: in flight when its app died (sent
    # in the prestop phase or after), none while the pods were running.
    assert requests["by_connection"]["reused"]["failed"] == requests["failed"]
    assert requests["by_phase"]["running"]["failed"] == 0
    assert requests["by_kind"]["reset"] > 0
    # The prestop delay covered the propagation: the balancer had stopped routing to the pods,
    # and they still got requests on the connections that stayed.
    assert sum(pod["requests_after_endpoint_removal"]["failed"] for pod in result["pods"]) > 0
    assert all(pod["requests_after_endpoint_removal"]["sent"] > 0 for pod in result["pods"])


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "load",
    [
        pytest.param(("--balancer", "l7"), id="pooled-l7"),
        pytest.param(("--client", "fresh"), id="fresh"),
    ],
)
def test_simulate_an_app_that_exits_at_sigterm_passes_when_requests_leave_with_the_endpoint(
    load: tuple[str, ...],
) -> None:
    # l7 stops using a pod once its removal arrives, and fresh connections follow the balancer:
    # a prestop delay longer than the propagation is then enough.
    completed = simulate("--json", "--pods", "2", *load, "--", *EXITING_WITHOUT_EVENTS)
    assert completed.returncode == 0, completed.stderr
    result = result_of(completed)
    assert result["requests"]["failed"] == 0
    assert all(pod["requests_after_endpoint_removal"]["failed"] == 0 for pod in result["pods"])


@pytest.mark.timeout(60)
def test_simulate_pooled_l4_passes_an_app_that_exits_at_sigterm_when_it_follows_its_sidecars_events() -> None:
    app = (*DEMO, "--on-sigterm", "exit", "--latency", "0.2")  # $SHUTDOWN_SIDECAR_URL: its own sidecar
    completed = simulate("--json", "--pods", "2", "--", *app)
    assert completed.returncode == 0, completed.stderr
    result = result_of(completed)
    assert result["requests"]["failed"] == 0
    # Told at t0, the app answered `Connection: close`: the pooled clients left during the delay.
    assert result["requests"]["by_phase"]["drain"]["sent"] == 0


@pytest.mark.timeout(90)
def test_simulate_one_replica_without_surge_is_served_by_the_terminating_pod_only_while_it_stays_serving() -> None:
    # maxSurge 0, one replica: the old pod is deleted first and, until its replacement is ready and
    # known, it is the Service's only endpoint: not ready, terminating, and kube-proxy falls back
    # to it only while it is serving (its Ready condition). The old model removed it: all refused.
    rollout = ("--json", "--pods", "1", "--max-surge", "0", "--prestop-delay", "5", "--grace-period", "10")
    failing_at_t0 = result_of(simulate(*rollout))
    assert failing_at_t0["verdict"] == "fail"
    assert failing_at_t0["requests"]["by_phase"]["no_endpoints"]["failed"] > 0
    assert failing_at_t0["settings"]["strategy"] == "Deployment RollingUpdate: maxSurge 0, maxUnavailable 1"

    serving_until_stop = simulate(*rollout, "--sidecar-readiness", "stop")
    assert serving_until_stop.returncode == 0, serving_until_stop.stdout
    assert result_of(serving_until_stop)["requests"]["failed"] == 0


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("stop_signal", "passes"), [("SIGTERM", False), ("SIGINT", True)])
def test_simulate_an_app_that_stops_on_sigint_only_passes_when_its_stop_signal_is_honoured(
    stop_signal: str, passes: bool
) -> None:
    app = (*DEMO, "--on-sigterm", "ignore")  # the demo stops on SIGINT whatever --on-sigterm says
    completed = simulate("--json", "--pods", "1", "--grace-period", "4", "--prestop-delay", "1",
                         "--propagation-delay", "0.5", "--stop-signal", stop_signal, "--", *app)  # fmt: skip
    result = result_of(completed)
    (pod,) = result["pods"]
    assert pod["containers"]["app"]["stop_signal"] == stop_signal
    assert (completed.returncode == 0) is passes, completed.stdout
    assert (pod["sigkilled"] == []) is passes


@pytest.mark.timeout(60)
def test_simulate_an_app_listening_on_127_0_0_1_only_exits_2_saying_the_kubelet_cannot_reach_it() -> None:
    completed = simulate("--pods", "1", "--", *DEMO, "--host", "127.0.0.1", timeout=40)
    assert completed.returncode == 2, completed.stderr
    error = completed.stderr.splitlines()[-1]
    assert "app listens on 127.0.0.1:" in error
    assert "not on the pod's address 127.0.0.2" in error
    assert "the balancer's traffic" in error


MANIFEST = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  strategy: {type: RollingUpdate, rollingUpdate: {maxSurge: 0, maxUnavailable: 1}}
  template:
    spec:
      terminationGracePeriodSeconds: 5
      initContainers:
        - name: shutdown-sidecar
          restartPolicy: Always
          args: [serve, --native-sidecar=true, --prestop-delay=1, --app-port=8080]
          ports: [{containerPort: 9180}]
          readinessProbe: {httpGet: {path: /readyz, port: 9180}, periodSeconds: 1, failureThreshold: 1}
      containers:
        - name: web
          image: web:1
          ports: [{name: http, containerPort: 8080}]
          lifecycle: {preStop: {httpGet: {path: /prestop, port: 9180}}}
"""


@pytest.mark.timeout(60)
def test_simulate_manifest_from_stdin_native_sidecar_max_surge_0_two_replicas_passes() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "sidecar", "simulate", "--json", "--manifest", "-", "--propagation-delay", "0.5",
         "--", *DEMO],
        input=MANIFEST, capture_output=True, text=True, timeout=60, check=False, cwd=ROOT,
    )  # fmt: skip
    result = result_of(completed)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert result["settings"]["strategy"] == "Deployment RollingUpdate: maxSurge 0, maxUnavailable 1"
    assert (result["settings"]["pods"], result["settings"]["grace_period_seconds"]) == (2, 5)
    assert len(result["pods"]) == 2


@pytest.mark.timeout(90)
def test_simulate_asgi_app_holds_on_the_requests_it_reports() -> None:
    # The built-in uvicorn app with SidecarMiddleware reports each request it starts: behind an l7
    # proxy's pools (few new connections), with --prestop-evidence requests, the auto hold's window
    # comes from those requests and the hold ends on quiet, well before its maximum (on connections
    # alone: the maximum, issue #22).
    rollout = ("--json", "--app", "asgi", "--pods", "2", "--balancer", "l7", "--grace-period", "20")
    hold = ("--prestop-delay", "auto", "--prestop-delay-max", "10", "--prestop-evidence", "requests")
    completed = simulate(*rollout, *hold, "--propagation-delay", "0.5")
    assert completed.returncode == 0, completed.stderr
    result = result_of(completed)
    holds = [pod["report"]["hold"] for pod in result["pods"]]
    assert [(hold["evidence"], hold["released_by"]) for hold in holds] == [("requests", "quiet")] * 2
    assert all(hold["requests_after_t0"] > 0 and hold["duration_seconds"] < 5 for hold in holds)


def load_started_after_seconds(result: dict[str, Any]) -> float:
    """When the first request was sent, to the resolution of the --json requests over time."""
    over_time = result["requests"]["over_time"]
    counts = [row for connection in ("new", "reused") for row in over_time[connection].values()]
    first_bin = min(index for row in counts for index, count in enumerate(row) if count)
    return float(first_bin * over_time["bin_seconds"])


@pytest.mark.timeout(90)
def test_simulate_auto_hold_deletes_the_first_pod_no_sooner_than_its_maximum_under_load() -> None:
    # An auto hold judges quiet from the arrivals before t0: the old pods serve under load for the
    # hold's maximum first, as a long-running pod has (1 s before: a history of the pools' fill).
    # maxSurge 0: the first deletion follows the warm-up, no new pod to wait for.
    rollout = ("--json", "--pods", "2", "--max-surge", "0", "--max-unavailable", "1", "--propagation-delay", "0.5")
    completed = simulate(*rollout, "--rps", "20", "--prestop-delay", "auto", "--prestop-delay-max", "4")
    result = result_of(completed)
    assert result["settings"]["warm_up_seconds"] == 4
    first_deletion = min(pod["deleted_after_seconds"] for pod in result["pods"])
    bin_seconds = result["requests"]["over_time"]["bin_seconds"]
    assert first_deletion - load_started_after_seconds(result) >= 4 - bin_seconds
