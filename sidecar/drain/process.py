"""process_exit: the app's process is gone. A pidfd becomes readable when the process exits, so
the loop is woken by the kernel (no polling) within microseconds. Needs the process in our PID
namespace: the wrapper's own child, or a pod with shareProcessNamespace: true."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from collections.abc import Callable
from pathlib import Path

PROC = Path("/proc")


def find_process(pattern: str, *, exclude: frozenset[int] = frozenset(), proc: Path = PROC) -> int | None:
    """The lowest PID whose command line (arguments joined by spaces) matches `pattern`."""
    regex = re.compile(pattern)
    for pid in sorted(int(entry.name) for entry in proc.iterdir() if entry.name.isdigit()):
        if pid in exclude:
            continue
        try:
            cmdline = (proc / str(pid) / "cmdline").read_bytes()
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if cmdline and regex.search(cmdline.rstrip(b"\0").replace(b"\0", b" ").decode(errors="replace")):
            return pid
    return None


class ProcessExitWatch:
    """Calls `on_exit` once, on the loop, when the watched process exits."""

    def __init__(self, loop: asyncio.AbstractEventLoop, on_exit: Callable[[], None]) -> None:
        self._loop = loop
        self._on_exit = on_exit
        self._pidfd: int | None = None
        self.pid: int | None = None

    def watch(self, pid: int) -> None:
        """Raises ProcessLookupError when `pid` does not exist (or has already exited)."""
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
