from __future__ import annotations

import asyncio
import time

import pytest

from sidecar.integrations.events import ShutdownState
from sidecar.integrations.lifespan import BackgroundTasks, budget_seconds, drain_tasks


def state_with_seconds_left(seconds: float, report_reserve: float = 0.5) -> ShutdownState:
    state = ShutdownState()
    state.update(
        "drain", {"t0": time.time(), "deadline": time.time() + seconds, "report_reserve_seconds": report_reserve}
    )
    return state


def test_lifespan_budget_is_the_sidecars_deadline_less_both_reserves_else_the_fallback() -> None:
    assert budget_seconds(state_with_seconds_left(20), 1.0, 25.0) == pytest.approx(18.5, abs=0.5)
    assert budget_seconds(state_with_seconds_left(1), 1.0, 25.0) == 0.0  # overrun: nothing to wait for
    assert budget_seconds(ShutdownState(), 1.0, 25.0) == 25.0


@pytest.mark.anyio
async def test_lifespan_waits_then_cancels_then_waits_and_names_the_cancelled(caplog: pytest.LogCaptureFixture) -> None:
    tasks = BackgroundTasks()
    tasks.spawn(asyncio.sleep(0), name="quick")
    tasks.spawn(asyncio.Event().wait(), name="forever")
    state = state_with_seconds_left(1.5)
    result = await tasks.drain(state=state, reserve_seconds=0.5)
    assert (result.finished, result.cancelled, result.stuck) == (("quick",), ("forever",), ())
    assert "tasks=forever" in caplog.text
    assert len(tasks) == 0
    # Recorded for the middleware's completion report.
    assert state.tasks == {
        "finished": ["quick"],
        "cancelled": ["forever"],
        "stuck": [],
        "waited_seconds": round(result.waited_seconds, 3),
    }


@pytest.mark.anyio
async def test_lifespan_a_loop_is_cancelled_after_the_short_wait_not_at_the_budget() -> None:
    tasks = BackgroundTasks()

    refreshed = 0

    async def refresh() -> None:
        nonlocal refreshed
        while True:
            refreshed += 1
            await asyncio.sleep(1)

    tasks.spawn(refresh(), name="refresh")
    result = await tasks.drain(state=state_with_seconds_left(30), wait_seconds=0.05)
    assert result.cancelled == ("refresh",)
    # 80% of the ~28.5 s budget before the change; the short wait plus the unwinding now.
    assert result.waited_seconds < 5


@pytest.mark.anyio
async def test_lifespan_a_task_declared_waited_for_gets_the_budget_while_the_loops_are_cancelled() -> None:
    tasks = BackgroundTasks()
    loop_cancelled = asyncio.Event()

    async def loop() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            loop_cancelled.set()

    async def upload() -> str:
        await loop_cancelled.wait()  # still running when the short wait is over
        await asyncio.sleep(0)
        return "uploaded"

    tasks.spawn(loop(), name="loop")
    upload_task = tasks.spawn(upload(), name="upload", wait=True)
    result = await tasks.drain(state=state_with_seconds_left(10), wait_seconds=0.05)
    assert (result.finished, result.cancelled, result.stuck) == (("upload",), ("loop",), ())
    assert upload_task.result() == "uploaded"


@pytest.mark.anyio
async def test_lifespan_a_declared_task_still_running_at_the_budget_is_cancelled_too() -> None:
    tasks = BackgroundTasks()
    tasks.spawn(asyncio.Event().wait(), name="endless-upload", wait=True)
    result = await tasks.drain(state=state_with_seconds_left(1.2), reserve_seconds=0.5)
    assert result.cancelled == ("endless-upload",)


@pytest.mark.anyio
async def test_lifespan_a_task_that_ignores_cancellation_is_reported_stuck_not_awaited_forever() -> None:
    release = asyncio.Event()

    async def stubborn() -> None:
        while not release.is_set():
            try:
                await release.wait()
            except asyncio.CancelledError:
                continue

    task = asyncio.create_task(stubborn(), name="stubborn")
    result = await drain_tasks([task], state=state_with_seconds_left(1.2), reserve_seconds=0.5)
    assert result.stuck == ("stubborn",)
    release.set()
    await task


@pytest.mark.anyio
async def test_lifespan_nothing_to_drain_returns_at_once() -> None:
    done = asyncio.create_task(asyncio.sleep(0))
    await done
    result = await drain_tasks([done], state=ShutdownState())
    assert (result.finished, result.cancelled, result.stuck) == ((), (), ())
