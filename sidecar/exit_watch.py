"""A process's exit as the kernel tells it: a pidfd becomes readable when the process exits, so the
loop is woken within microseconds, without polling. Needs the process in our PID namespace. The
one place a pidfd is waited on; what an exit means is the caller's business."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
from collections.abc import Callable, Sequence


class ProcessExitWatch:
    """Calls `on_exit` once, on the loop, when the watched process exits."""

    def __init__(self, loop: asyncio.AbstractEventLoop, on_exit: Callable[[], None]) -> None:
        self._loop = loop
        self._on_exit = on_exit
        self._pidfd: int | None = None
        self.pid: int | None = None

    def watch(self, pid: int) -> None:
        """Raises ProcessLookupError when `pid` does not exist (or has already exited), OSError
        when the kernel has no pidfd."""
        self._pidfd = os.pidfd_open(pid)
        self.pid = pid
        self._loop.add_reader(self._pidfd, self._exited)

    def _exited(self) -> None:
        self.close()
        self._on_exit()

    def close(self) -> None:
        if self._pidfd is not None:
            self._loop.remove_reader(self._pidfd)
            with contextlib.suppress(OSError):
                os.close(self._pidfd)
            self._pidfd = None


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def wait_until_gone(pids: Sequence[int]) -> None:
    """Return once every one of `pids` has exited. Every pidfd is opened first, so a PID reused
    while an earlier one is awaited is never taken for the process it named."""
    loop = asyncio.get_running_loop()
    watches: list[tuple[ProcessExitWatch, asyncio.Future[None]]] = []
    try:
        for pid in pids:
            exited = loop.create_future()
            watch = ProcessExitWatch(loop, functools.partial(_settle, exited))
            with contextlib.suppress(ProcessLookupError):  # gone already
                watch.watch(pid)
                watches.append((watch, exited))
        for _, exited in watches:
            await exited
    finally:
        for watch, _ in watches:
            watch.close()
