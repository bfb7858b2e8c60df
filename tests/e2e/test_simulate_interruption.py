"""`shutdown-sidecar simulate` stopped mid-rollout by a signal, as a terminal, a CI runner or a
test's timeout stops it: every process it started (each pod's containers, what they started, the
preStop hook it is running, its watchdog) is gone soon after, whatever the signal; one it can
catch is reported in one line, with exit status 128 + its number."""

from __future__ import annotations

import contextlib
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.process_tree import Started, descendants, end_session, kill_all, survivors
from tests.e2e.sidecar_process import wait_until

ROOT = Path(__file__).resolve().parent.parent.parent
# Each pod's app is a shell's child, as a `run` wrapper's app is the wrapper's: not the process the
# kubelet signals, and not one that a parent-death signal reaches.
APP = ("sh", "-c", f"{shlex.quote(sys.executable)} -m sidecar.demo --port $PORT & wait")
# The old pod's termination waits in its exec preStop hook (a shell and its sleep) for 300 s.
HOOK_SLEEP = "sleep 300"
MANIFEST = f"""\
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web}}
spec:
  replicas: 1
  template:
    spec:
      terminationGracePeriodSeconds: 600
      containers:
        - name: web
          image: web:1
          ports: [{{name: http, containerPort: 8080}}]
          lifecycle: {{preStop: {{exec: {{command: [sh, -c, "{HOOK_SLEEP}; true"]}}}}}}
"""
GONE_SECONDS = 10.0


@pytest.mark.timeout(90)
@pytest.mark.parametrize(
    "sig",
    [
        pytest.param(signal.SIGKILL, id="sigkill"),
        pytest.param(signal.SIGTERM, id="sigterm"),
        pytest.param(signal.SIGINT, id="sigint"),
        pytest.param(signal.SIGHUP, id="sighup"),
    ],
)
def test_simulate_stopped_by_a_signal_leaves_no_process_it_started_running(tmp_path: Path, sig: signal.Signals) -> None:
    manifest, out, err = tmp_path / "deployment.yaml", tmp_path / "stdout", tmp_path / "stderr"
    manifest.write_text(MANIFEST)
    with out.open("w") as stdout, err.open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "sidecar", "simulate", "--manifest", str(manifest), "--", *APP],
            stdout=stdout,
            stderr=stderr,
            cwd=ROOT,
            start_new_session=True,
        )
    started: list[Started] = []
    try:
        # Mid-rollout: the new pod serves, the old one's termination is held in its hook.
        wait_until(
            lambda: any(p.command == HOOK_SLEEP for p in descendants(process.pid)), 45, what="the preStop hook to run"
        )
        started = descendants(process.pid)
        apps = [p for p in started if p.command.startswith(f"{sys.executable} -m sidecar.demo")]
        assert len(apps) == 2, started  # the old pod's app and the new one's

        process.send_signal(sig)
        status = process.wait(timeout=20)

        with contextlib.suppress(AssertionError):  # asserted below, naming what is left
            wait_until(lambda: not survivors(started), GONE_SECONDS, what="every process it started to exit")
        assert not survivors(started), f"still running {GONE_SECONDS:g}s after {sig.name}: {survivors(started)}"
        if sig == signal.SIGKILL:
            assert status == -signal.SIGKILL
        else:
            assert status == 128 + sig.value
            assert out.read_text() == ""
            assert err.read_text().splitlines()[-1] == f"shutdown-sidecar simulate: interrupted by {sig.name}"
    finally:
        end_session(process)
        kill_all(started)
