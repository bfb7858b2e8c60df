"""The kubelet's exec preStop hook, run on this machine: passed on exit 0, failed otherwise or when
the grace period ends first."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from sidecar.simulate.container import ContainerProcess, environment
from sidecar.simulate.podspec import ContainerSpec, ExecHook
from sidecar.simulate.records import ContainerRecord
from sidecar.simulate.termination import run_exec_hook, run_pre_stop_hook
from tests.simulate.waiting import is_running, wait_until

WAIT_SECONDS = 10.0


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("code", "expected"),
    [pytest.param(0, ("exit status 0", True), id="passes"), pytest.param(3, ("exit status 3", False), id="fails")],
)
async def test_exec_hook_passes_on_exit_0_only(code: int, expected: tuple[str, bool]) -> None:
    hook = ExecHook((sys.executable, "-c", f"raise SystemExit({code})"))
    assert await run_exec_hook(hook, environment({}), time.monotonic() + 10) == expected


@pytest.mark.anyio
async def test_exec_hook_still_running_at_the_grace_deadline_is_killed_and_failed() -> None:
    hook = ExecHook(("sleep", "30"))
    started = time.monotonic()
    outcome = await run_exec_hook(hook, environment({}), started + 0.2)
    assert outcome == ("still running at the end of the grace period", False)
    assert time.monotonic() - started < 5


@pytest.mark.anyio
async def test_exec_hook_cancelled_as_the_rehearsal_ends_is_killed_with_what_it_started(tmp_path: Path) -> None:
    # Interrupted, the rehearsal cancels the hook it is running: neither the hook nor its children
    # may outlive it.
    pid_file = tmp_path / "pids"
    hook = ExecHook(("sh", "-c", f"sleep 60 & echo $$ $! > {pid_file}.tmp; mv {pid_file}.tmp {pid_file}; wait"))
    running = asyncio.create_task(run_exec_hook(hook, environment({}), time.monotonic() + 60))
    await wait_until(pid_file.exists, WAIT_SECONDS)
    pids = [int(pid) for pid in pid_file.read_text().split()]  # the hook's shell, its sleep
    try:
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
        await wait_until(lambda: not any(is_running(pid) for pid in pids), WAIT_SECONDS)
    finally:
        for pid in filter(is_running, pids):  # a failing test leaves nothing behind either
            os.kill(pid, signal.SIGKILL)


@pytest.mark.anyio
async def test_exec_hook_runs_with_the_containers_environment(tmp_path: Path) -> None:
    """An exec hook runs inside its container, so with the container's variables (a hook that
    reads $SHUTDOWN_SIDECAR_URL, say), not with this machine's."""
    hook = ExecHook(("sh", "-c", 'test "$HOOK_SEES" = container'))
    spec = ContainerSpec("app", ("sleep", "30"), env={"HOOK_SEES": "container"}, pre_stop=hook)
    record = ContainerRecord("app")
    container = await ContainerProcess.start(spec.argv, spec.env, record, tmp_path, time.monotonic)
    events: list[str] = []
    try:
        await run_pre_stop_hook(
            spec,
            container,
            address="127.0.0.1",
            ports={},
            grace_deadline=time.monotonic() + 10,
            clock=time.monotonic,
            on_event=events.append,
        )
    finally:
        container.kill()
        await container.reap()
    assert (record.hook_result, record.hook_failed) == ("exit status 0", False), events
