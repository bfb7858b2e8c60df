"""Blocking work (file writes, network pushes, span flushes) run off the event loop, in a daemon
thread, awaited only until an absolute deadline. Past it the caller moves on and the thread is
abandoned: a write stuck on a dead NFS mount must not hold the probes or the exit hostage."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import TypeVar

from sidecar.deadline import seconds_left

T = TypeVar("T")


async def run_in_thread(work: Callable[[], T], *, deadline: float, name: str) -> T:
    """Run `work` in a fresh daemon thread; return its result or re-raise its exception.

    `deadline` is a time.monotonic() value. Raises TimeoutError when it passes first. A daemon
    thread (not asyncio.to_thread) because the default executor's threads are joined at
    interpreter exit, which would let a hung write keep the process alive past the deadline.
    """
    if seconds_left(deadline) <= 0:
        # No time left: starting the work would only leave a thread behind (a push, an export).
        raise TimeoutError(f"{name}: no time left before the deadline")
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: T | None, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    def hand_back(result: T | None, error: BaseException | None) -> None:
        # RuntimeError: the loop has closed, so nobody is waiting any more.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(settle, result, error)

    def target() -> None:
        try:
            result = work()
        except BaseException as exc:  # handed to the awaiting coroutine, not swallowed
            hand_back(None, exc)
        else:
            hand_back(result, None)

    threading.Thread(target=target, name=name, daemon=True).start()
    async with asyncio.timeout(seconds_left(deadline)):
        return await future
