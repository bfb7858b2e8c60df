"""`shutdown-sidecar simulate` starved by the machine: the rehearsal process is stopped (SIGSTOP)
for longer than the grace period right as the old pod is deleted, as a busy neighbour would starve
it, while the pod's own processes run on. What fails then is the rehearsal's lateness, not the app:
the verdict is inconclusive (exit status 3) and names the figure, where it used to be fail."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e.process_tree import end_session
from tests.e2e.sidecar_process import wait_until

GRACE_SECONDS = 4
# Longer than the grace period: the kubelet's stop signal, its SIGKILL and the balancer's endpoint
# removal all come late, and the load stands still.
STARVED_SECONDS = 6.0


@pytest.mark.timeout(120)
def test_simulate_starved_past_the_grace_period_is_inconclusive_and_names_the_lateness(tmp_path: Path) -> None:
    out, err = tmp_path / "stdout", tmp_path / "stderr"
    argv = [
        sys.executable, "-m", "sidecar", "simulate", "--pods", "1", "--json",
        "--grace-period", str(GRACE_SECONDS), "--prestop-delay", "1", "--propagation-delay", "0.5",
    ]  # fmt: skip
    with out.open("w") as stdout, err.open("w") as stderr:
        process = subprocess.Popen(argv, stdout=stdout, stderr=stderr, start_new_session=True)
    try:
        wait_until(lambda: "old-1 deleted" in err.read_text(), 60, interval=0.005, what="the old pod's deletion")
        os.kill(process.pid, signal.SIGSTOP)
        time.sleep(STARVED_SECONDS)  # the starvation itself, not a wait for anything
        os.kill(process.pid, signal.SIGCONT)
        status = process.wait(timeout=60)
    finally:
        end_session(process)

    result = json.loads(out.read_text())
    reasons = json.dumps({key: result.get(key) for key in ("reasons", "doubts", "lateness")}, indent=1)
    assert (status, result["verdict"]) == (3, "inconclusive"), f"{err.read_text()}\n{reasons}"
    assert result["lateness"]["loop"]["max_lag_seconds"] >= STARVED_SECONDS - 1
    assert result["reasons"] == result["doubts"]
    assert any("the rehearsal" in doubt for doubt in result["doubts"]), result["doubts"]
    assert "INCONCLUSIVE" not in out.read_text()  # --json: the document alone
