"""Background tasks at the app's shutdown, the seed article's way: wait for them, then cancel the
rest, then wait for the cancelled — all inside the budget the sidecar gave (its deadline less a
reserve), not a number written in the code. Logs every task it had to cancel."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Coroutine, Iterable
from typing import Any, Final

from sidecar.integrations import shutdown_state
from sidecar.integrations.events import ShutdownState

logger = logging.getLogger("sidecar.integrations")

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


def budget_seconds(state: ShutdownState, reserve_seconds: float, fallback_seconds: float) -> float:
    """Seconds to the sidecar's deadline less its report reserve and `reserve_seconds`."""
    left = state.seconds_left(state.report_reserve_seconds + reserve_seconds)
    return fallback_seconds if left is None else left


async def drain_tasks(
    tasks: Iterable[asyncio.Task[Any]],
    *,
    state: ShutdownState | None = None,
    reserve_seconds: float = RESERVE_SECONDS,
    fallback_seconds: float = FALLBACK_SECONDS,
) -> DrainResult:
    """Wait for `tasks`, cancel those still running when 80% of the budget is spent, and wait the
    rest of it for them to unwind. The budget: see budget_seconds (`state` defaults to this
    process's, which SidecarMiddleware keeps)."""
    pending = {task for task in tasks if not task.done()}
    budget = budget_seconds(state or shutdown_state(), reserve_seconds, fallback_seconds)
    if not pending:
        return DrainResult((), (), ())
    logger.info("waiting for background tasks tasks=%d budget_seconds=%.3f", len(pending), budget)
    done, still = await asyncio.wait(pending, timeout=budget * (1 - CANCEL_SHARE)) if budget > 0 else (set(), pending)
    for task in still:
        task.cancel()
    if still:
        names = sorted(task.get_name() for task in still)
        logger.warning("cancelling background tasks still running at the budget tasks=%s", ",".join(names))
        await asyncio.wait(still, timeout=max(budget * CANCEL_SHARE, 0.001))
    stuck = {task for task in still if not task.done()}
    if stuck:
        logger.error("background tasks ignored their cancellation tasks=%s", ",".join(t.get_name() for t in stuck))
    return DrainResult(
        tuple(sorted(task.get_name() for task in done)),
        tuple(sorted(task.get_name() for task in still - stuck)),
        tuple(sorted(task.get_name() for task in stuck)),
    )


class BackgroundTasks:
    """The app's background tasks, held (the loop keeps only weak references) until they end,
    and drained in its lifespan: `await tasks.drain()` after its `yield`."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coroutine: Coroutine[Any, Any, Any], *, name: str | None = None) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coroutine, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def __len__(self) -> int:
        return len(self._tasks)

    async def drain(
        self,
        *,
        state: ShutdownState | None = None,
        reserve_seconds: float = RESERVE_SECONDS,
        fallback_seconds: float = FALLBACK_SECONDS,
    ) -> DrainResult:
        return await drain_tasks(
            set(self._tasks), state=state, reserve_seconds=reserve_seconds, fallback_seconds=fallback_seconds
        )
