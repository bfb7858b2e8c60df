"""Background tasks at the app's shutdown: a task that finishes a unit of work (a flush, an upload)
is declared as waited for and gets the sidecar's budget (its deadline less a reserve); any other
task (a loop that never ends) gets a short, explicit wait and is then cancelled. What it waited
for and cancelled goes into the app's completion report to the sidecar, and the log."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Collection, Coroutine, Iterable
from typing import Any, Final

from sidecar.integrations import shutdown_state
from sidecar.integrations.events import ShutdownState

logger = logging.getLogger("sidecar.integrations")

# How long a task not declared waited-for may take to end on its own before it is cancelled: a
# loop never ends, and waiting for it only spends the grace period (issue 20: 80% of the budget,
# 23.8 s per pod of a 30 s rollout, went on a `while True` loop).
DEFAULT_WAIT_SECONDS: Final = 1.0
# Time kept after the tasks for the rest of the app's shutdown (pools, files) and its exit, on top
# of the sidecar's own report reserve.
RESERVE_SECONDS: Final = 1.0
# Without a sidecar deadline (no sidecar, or shutdown not begun through it): the seed's budget.
FALLBACK_SECONDS: Final = 25.0
CANCEL_SHARE: Final = 0.2  # of the budget, kept for the cancelled tasks to unwind


@dataclasses.dataclass(frozen=True)
class DrainResult:
    finished: tuple[str, ...]  # ended on their own
    cancelled: tuple[str, ...]  # cancelled, and then ended
    stuck: tuple[str, ...]  # still running after the cancellation's wait: they ignore cancellation
    waited_seconds: float = 0.0  # from the drain's start until every task ended or the wait gave up

    def report(self) -> dict[str, Any]:
        """The `tasks` object of the completion report (POST /drain)."""
        return {
            "finished": list(self.finished),
            "cancelled": list(self.cancelled),
            "stuck": list(self.stuck),
            "waited_seconds": round(self.waited_seconds, 3),
        }


def budget_seconds(state: ShutdownState, reserve_seconds: float, fallback_seconds: float) -> float:
    """Seconds to the sidecar's deadline less its report reserve and `reserve_seconds`."""
    left = state.seconds_left(state.report_reserve_seconds + reserve_seconds)
    return fallback_seconds if left is None else left


async def drain_tasks(
    tasks: Iterable[asyncio.Task[Any]],
    *,
    waited_for: Collection[asyncio.Task[Any]] = (),
    wait_seconds: float = DEFAULT_WAIT_SECONDS,
    state: ShutdownState | None = None,
    reserve_seconds: float = RESERVE_SECONDS,
    fallback_seconds: float = FALLBACK_SECONDS,
) -> DrainResult:
    """Give `tasks` `wait_seconds` to end, then cancel them, except those in `waited_for`, which
    are cancelled only when 80% of the budget is spent; then wait the rest of it for the cancelled
    to unwind. The budget: see budget_seconds (`state` defaults to this process's, which
    SidecarMiddleware keeps and reports from: the result is recorded in `state.tasks`)."""
    state = state or shutdown_state()
    started = time.monotonic()
    pending = {task for task in tasks if not task.done()}
    budget = budget_seconds(state, reserve_seconds, fallback_seconds)
    if not pending:
        return DrainResult((), (), ())
    patient = {task for task in pending if task in waited_for}
    logger.info(
        "waiting for background tasks tasks=%d waited_for=%d wait_seconds=%.3f budget_seconds=%.3f",
        len(pending),
        len(patient),
        wait_seconds,
        budget,
    )
    wait_end = budget * (1 - CANCEL_SHARE)
    cancelled = await _wait_then_cancel(pending - patient, min(wait_seconds, wait_end))
    if patient:
        cancelled |= await _wait_then_cancel(patient, wait_end - (time.monotonic() - started))
    if cancelled:
        # Their share of the budget to unwind, never past the budget's end.
        unwind_seconds = min(budget * CANCEL_SHARE, budget - (time.monotonic() - started))
        await asyncio.wait(cancelled, timeout=max(unwind_seconds, 0.001))
    stuck = {task for task in cancelled if not task.done()}
    if stuck:
        logger.error("background tasks ignored their cancellation tasks=%s", ",".join(_names(stuck)))
    result = DrainResult(
        _names(pending - cancelled), _names(cancelled - stuck), _names(stuck), time.monotonic() - started
    )
    state.tasks = result.report()
    return result


async def _wait_then_cancel(tasks: set[asyncio.Task[Any]], wait_seconds: float) -> set[asyncio.Task[Any]]:
    """Wait up to `wait_seconds` for `tasks`, cancel those still running and return them."""
    if not tasks:
        return set()
    _, still = await asyncio.wait(tasks, timeout=wait_seconds) if wait_seconds > 0 else (set(), tasks)
    for task in still:
        task.cancel()
    if still:
        logger.warning(
            "cancelling background tasks still running tasks=%s waited_seconds=%.3f",
            ",".join(_names(still)),
            max(wait_seconds, 0.0),
        )
    return still


def _names(tasks: Iterable[asyncio.Task[Any]]) -> tuple[str, ...]:
    return tuple(sorted(task.get_name() for task in tasks))


class BackgroundTasks:
    """The app's background tasks, held (the loop keeps only weak references) until they end,
    and drained in its lifespan: `await tasks.drain()` after its `yield`."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()
        self._waited_for: set[asyncio.Task[Any]] = set()

    def spawn(
        self, coroutine: Coroutine[Any, Any, Any], *, name: str | None = None, wait: bool = False
    ) -> asyncio.Task[Any]:
        """`wait=True`: a task that finishes a unit of work, waited for at the drain until 80% of
        the budget; otherwise it gets drain()'s `wait_seconds` and is cancelled."""
        task = asyncio.get_running_loop().create_task(coroutine, name=name)
        self._tasks.add(task)
        if wait:
            self._waited_for.add(task)
        task.add_done_callback(self._forget)
        return task

    def _forget(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        self._waited_for.discard(task)

    def __len__(self) -> int:
        return len(self._tasks)

    async def drain(
        self,
        *,
        wait_seconds: float = DEFAULT_WAIT_SECONDS,
        state: ShutdownState | None = None,
        reserve_seconds: float = RESERVE_SECONDS,
        fallback_seconds: float = FALLBACK_SECONDS,
    ) -> DrainResult:
        """See drain_tasks: `wait_seconds` for the tasks not spawned with `wait=True`."""
        return await drain_tasks(
            set(self._tasks),
            waited_for=set(self._waited_for),
            wait_seconds=wait_seconds,
            state=state,
            reserve_seconds=reserve_seconds,
            fallback_seconds=fallback_seconds,
        )
