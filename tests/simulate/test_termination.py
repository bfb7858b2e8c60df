"""The kubelet's exec preStop hook, run on this machine: passed on exit 0, failed otherwise or when
the grace period ends first."""

from __future__ import annotations

import sys
import time

import pytest

from sidecar.simulate.podspec import ExecHook
from sidecar.simulate.termination import run_exec_hook


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("code", "expected"),
    [pytest.param(0, ("exit status 0", True), id="passes"), pytest.param(3, ("exit status 3", False), id="fails")],
)
async def test_exec_hook_passes_on_exit_0_only(code: int, expected: tuple[str, bool]) -> None:
    hook = ExecHook((sys.executable, "-c", f"raise SystemExit({code})"))
    assert await run_exec_hook(hook, time.monotonic() + 10) == expected


@pytest.mark.anyio
async def test_exec_hook_still_running_at_the_grace_deadline_is_killed_and_failed() -> None:
    hook = ExecHook(("sleep", "30"))
    started = time.monotonic()
    assert await run_exec_hook(hook, started + 0.2) == ("still running at the end of the grace period", False)
    assert time.monotonic() - started < 5
