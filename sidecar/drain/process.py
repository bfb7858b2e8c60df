"""process_exit: the app's process is gone. A pidfd becomes readable when the process exits, so
the loop is woken by the kernel (no polling) within microseconds. Needs the process in our PID
namespace: the wrapper's own child, or a pod with shareProcessNamespace: true."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
from collections.abc import Callable
from pathlib import Path

from sidecar.lifecycle import DrainEndSource, Phase, Timeline
from sidecar.logs import LOGGER_NAME
from sidecar.parts import Part
from sidecar.telemetry.report import Observations

PROC = Path("/proc")

logger = logging.getLogger(LOGGER_NAME)


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


class WatchedProcess(Part):
    """serve mode with --watch-pid or --watch-process: the app's process, found at t0 and watched
    until it exits. Resolved at t0, not at start-up: the app container may start after the
    sidecar, and may have restarted since."""

    drain_sources = frozenset({DrainEndSource.PROCESS_EXIT})

    def __init__(
        self,
        *,
        pid: int | None,
        pattern: str | None,
        observations: Observations,
        on_exit: Callable[[], None],
        proc: Path = PROC,
    ) -> None:
        self.pid = pid
        self.pattern = pattern
        self.observations = observations
        self.proc = proc
        self._on_exit = on_exit
        self._watch: ProcessExitWatch | None = None

    def on_phase_change(self, previous: Phase, current: Phase, timeline: Timeline) -> None:
        if current is Phase.PRESTOP_DELAY:
            self._watch_app()

    def _watch_app(self) -> None:
        pid = self.pid
        if pid is None and self.pattern is not None:
            pid = find_process(self.pattern, exclude=frozenset({os.getpid()}), proc=self.proc)
        self._watch = ProcessExitWatch(asyncio.get_running_loop(), self._on_exit)
        try:
            if pid is None:
                raise ProcessLookupError(f"no process matches {self.pattern!r}")
            self._watch.watch(pid)
        except OSError as exc:
            self.observations.errors.append(f"process_exit: cannot watch the app process: {exc}")
            logger.warning("cannot watch the app process", extra={"fields": {"error": str(exc)}})
        else:
            logger.info("watching the app process", extra={"fields": {"pid": pid}})

    def close(self) -> None:
        if self._watch is not None:
            self._watch.close()
