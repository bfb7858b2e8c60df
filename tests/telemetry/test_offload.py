from __future__ import annotations

import threading
import time

import pytest

from sidecar.telemetry.offload import run_in_thread


class WorkFailed(Exception):
    pass


@pytest.mark.anyio
async def test_offload_returns_the_work_result() -> None:
    assert await run_in_thread(lambda: {"pushed": 3}, deadline=time.monotonic() + 30, name="work") == {"pushed": 3}


@pytest.mark.anyio
async def test_offload_reraises_the_work_exception() -> None:
    error = WorkFailed("disk full")

    def work() -> None:
        raise error

    with pytest.raises(WorkFailed) as raised:
        await run_in_thread(work, deadline=time.monotonic() + 30, name="work")
    assert raised.value is error


@pytest.mark.anyio
async def test_offload_runs_the_work_off_the_loop_in_a_named_daemon_thread() -> None:
    def work() -> tuple[int, str, bool]:
        thread = threading.current_thread()
        return threading.get_ident(), thread.name, thread.daemon

    ident, name, daemon = await run_in_thread(work, deadline=time.monotonic() + 30, name="report-sink")
    assert ident != threading.get_ident()
    assert (name, daemon) == ("report-sink", True)


@pytest.mark.anyio
async def test_offload_gives_up_at_the_deadline_and_leaves_the_thread_running() -> None:
    started, release, finished = threading.Event(), threading.Event(), threading.Event()

    def work() -> str:
        started.set()
        release.wait(30)
        finished.set()
        return "late"

    try:
        began = time.monotonic()
        with pytest.raises(TimeoutError):
            await run_in_thread(work, deadline=began + 0.1, name="stuck-work")
        assert time.monotonic() - began < 10
        assert started.is_set()
        assert not finished.is_set()
        assert any(thread.name == "stuck-work" and thread.is_alive() for thread in threading.enumerate())
    finally:
        release.set()
    assert finished.wait(10), "the abandoned thread runs on to its end"


@pytest.mark.anyio
async def test_offload_past_the_deadline_starts_no_work() -> None:
    started: list[str] = []
    with pytest.raises(TimeoutError):
        await run_in_thread(lambda: started.append("work"), deadline=time.monotonic() - 1, name="late")
    assert started == []
    assert not any(thread.name == "late" for thread in threading.enumerate())
