"""Waiting in async tests on what sends no event (a process in /proc, a line in a log file): a
predicate polled under a deadline, never a bare sleep."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

POLL_SECONDS = 0.01


async def wait_until(predicate: Callable[[], object], timeout_seconds: float) -> None:
    """Until `predicate()` is truthy; TimeoutError once `timeout_seconds` have passed."""
    async with asyncio.timeout(timeout_seconds):
        while not predicate():  # noqa: ASYNC110 - /proc and files send no events to await
            await asyncio.sleep(POLL_SECONDS)


def is_running(pid: int) -> bool:
    """Alive and not a zombie: a killed orphan waits as one until its new parent reaps it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"
