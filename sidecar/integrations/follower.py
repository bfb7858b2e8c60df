"""The sidecar's /events followed from a daemon thread of its own, for processes without an asyncio
loop (WSGI workers, Celery workers). It must never block the caller: it only updates the state and
runs one callback at t0, in its thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

from sidecar.integrations.events import ShutdownEvents, ShutdownState, log_to_logging


def follow_in_thread(url: str, state: ShutdownState, at_t0: Callable[[], None] | None = None) -> threading.Thread:
    """Start following `url`'s events into `state`; `at_t0` runs once, in the follower's thread,
    when shutdown has started. The state's asyncio events belong to that thread's loop: other
    threads read `state.is_started` / `state.is_stopping`."""
    events = ShutdownEvents(url, state=state)
    thread = threading.Thread(target=asyncio.run, args=(_follow(events, at_t0),), name="sidecar-events", daemon=True)
    thread.start()
    return thread


async def _follow(events: ShutdownEvents, at_t0: Callable[[], None] | None) -> None:
    waiter = asyncio.create_task(_when_started(events.state, at_t0))
    try:
        await events.follow()
        await waiter  # follow() returns only after `done`: t0 has passed, the callback has run
    finally:
        waiter.cancel()


async def _when_started(state: ShutdownState, at_t0: Callable[[], None] | None) -> None:
    await state.started.wait()
    if at_t0 is not None:
        try:
            at_t0()
        except Exception as exc:  # the app's callback: its failure must not end the following
            log_to_logging("sidecar t0 callback failed", level="warning", error=repr(exc))
