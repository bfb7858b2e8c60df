from __future__ import annotations

import asyncio
import sys

import pytest

from sidecar.exit_watch import ProcessExitWatch, wait_until_gone


@pytest.mark.anyio
async def test_exit_watch_fires_when_a_real_process_exits() -> None:
    child = await asyncio.create_subprocess_exec(sys.executable, "-c", "import time; time.sleep(0.2)")
    exited = asyncio.Event()
    watch = ProcessExitWatch(asyncio.get_running_loop(), exited.set)
    watch.watch(child.pid)
    await asyncio.wait_for(exited.wait(), 5)
    await child.wait()


@pytest.mark.anyio
async def test_exit_watch_refuses_a_missing_pid() -> None:
    watch = ProcessExitWatch(asyncio.get_running_loop(), lambda: None)
    with pytest.raises(ProcessLookupError):
        watch.watch(2**22 - 1)


@pytest.mark.anyio
async def test_exit_watch_wait_until_gone_returns_once_every_process_has_exited() -> None:
    quick = await asyncio.create_subprocess_exec(sys.executable, "-c", "pass")
    slow = await asyncio.create_subprocess_exec(sys.executable, "-c", "import sys; sys.stdin.read()", stdin=-1)
    waiting = asyncio.create_task(wait_until_gone([quick.pid, slow.pid, 2**22 - 1]))  # the last: no such process
    await quick.wait()
    done, _ = await asyncio.wait({waiting}, timeout=0.3)
    assert not done, "returned while a process still ran"
    assert slow.stdin is not None
    slow.stdin.close()  # ends it
    await asyncio.wait_for(waiting, 5)
    await slow.wait()
