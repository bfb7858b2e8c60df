"""The lifespan helper on a real uvicorn next to a real sidecar, the README's pattern: at the pod's
shutdown the loop that never ends is cancelled after the short wait (not at 80% of the budget),
the task declared waited-for is waited for, and the sidecar's report says which was which."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable

import httpx
import pytest

from sidecar.integrations.lifespan import DEFAULT_WAIT_SECONDS
from tests.e2e.sidecar_process import SidecarProcess, wait_until
from tests.integrations.app_server import AppServer, uvicorn_port

WAIT_SECONDS = 20.0
# The app's stop after its SIGTERM: the declared task's 2 s of work (from the stop), and
# uvicorn's own stop. Before the change it waited 80% of the budget for the loop (about 20 s of a
# 30 s grace period).
STOP_BOUND_SECONDS = 8.0


@pytest.mark.timeout(90)
def test_lifespan_process_cancels_the_loop_soon_waits_for_the_declared_task_and_reports_both(
    start_sidecar: Callable[..., SidecarProcess],
) -> None:
    sidecar = start_sidecar("--grace-period", "30", "--prestop-delay", "1")
    command = ("uvicorn", "tests.integrations.lifespan_app:app", "--host", "127.0.0.1", "--port", "0")
    app = AppServer(command, {"SHUTDOWN_SIDECAR_URL": sidecar.url("")})
    try:
        port = uvicorn_port(app)
        assert httpx.get(f"http://127.0.0.1:{port}/", timeout=WAIT_SECONDS).text == "hello"
        wait_until(lambda: sidecar.get("/status").json()["app"], WAIT_SECONDS, what="the app's first report")
        hook = threading.Thread(target=lambda: sidecar.post("/prestop"))
        hook.start()
        hook.join(WAIT_SECONDS)
        sent = time.monotonic()
        app.signal(signal.SIGTERM)  # the kubelet's stop signal, after the hook returned
        assert app.wait(WAIT_SECONDS + 10) == -signal.SIGTERM
        stop_seconds = time.monotonic() - sent
        assert sidecar.wait(WAIT_SECONDS) == 0
    finally:
        app.close()
    print(f"app stop after SIGTERM: {stop_seconds:.2f}s")
    assert stop_seconds < STOP_BOUND_SECONDS, app.output
    report = sidecar.report()
    assert (report["outcome"], report["drain_end_source"]) == ("clean", "app_report")
    tasks = report["app"]["tasks"]
    assert (tasks["finished"], tasks["cancelled"], tasks["stuck"]) == (["upload-batch"], ["refresh-cache"], [])
    # The declared task's work was waited for past the default wait.
    assert DEFAULT_WAIT_SECONDS < tasks["waited_seconds"] < STOP_BOUND_SECONDS
