"""process_exit: the app's process is gone, seen by a pidfd (sidecar.exit_watch): the loop is woken
by the kernel (no polling) within microseconds. Needs the process in our PID namespace: the
wrapper's own child, or a pod with shareProcessNamespace: true. A --watch-process pattern is
matched in a child process under a time limit, never on the loop."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final

from sidecar.exit_watch import ProcessExitWatch
from sidecar.lifecycle import DrainEndSource, Phase, Timeline
from sidecar.logs import LOGGER_NAME
from sidecar.parts import Part
from sidecar.telemetry.report import Observations

PROC = Path("/proc")
# Python's re holds the GIL for the whole of a match, so a catastrophically backtracking pattern
# would freeze the event loop and the watchdog thread with it: the match runs in a child Python
# process, killed after this long (or at the drain deadline, if sooner).
MATCH_TIMEOUT_SECONDS: Final = 2.0
MATCHER: Final = "import sys; from sidecar.drain.process import main; sys.exit(main(sys.argv[1:]))"

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


def main(argv: Sequence[str]) -> int:
    """The matcher child: PATTERN EXCLUDED_PID PROC; prints the PID found, if any."""
    pattern, excluded, proc = argv
    pid = find_process(pattern, exclude=frozenset({int(excluded), os.getpid()}), proc=Path(proc))
    print("" if pid is None else pid)
    return 0


async def find_process_bounded(pattern: str, *, proc: Path, deadline: float) -> int | None:
    """find_process in a child process, given until `deadline` at most (time.monotonic()).
    Raises TimeoutError when the match takes longer, OSError when the child cannot run."""
    timeout = max(0.05, min(MATCH_TIMEOUT_SECONDS, deadline - time.monotonic()))
    argv = [sys.executable, "-c", MATCHER, pattern, str(os.getpid()), str(proc)]
    try:
        # A thread waits for the child (the loop goes on); subprocess.run kills it at the timeout.
        done = await asyncio.to_thread(subprocess.run, argv, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise TimeoutError(f"matching {pattern!r} took over {timeout:.2g} s") from None
    output = done.stdout.strip()
    if done.returncode != 0 or not (output.isdigit() or not output):
        raise OSError(f"the matcher failed ({done.returncode}): {done.stderr.decode(errors='replace')[-200:]}")
    return int(output) if output else None


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
        on_unavailable: Callable[[], None] = lambda: None,
        proc: Path = PROC,
    ) -> None:
        """`on_unavailable`: the process cannot be found or watched; other sources decide then."""
        self.pid = pid
        self.pattern = pattern
        self.observations = observations
        self.proc = proc
        self._on_exit = on_exit
        self._on_unavailable = on_unavailable
        self._watch: ProcessExitWatch | None = None
        self._finding: asyncio.Task[None] | None = None

    def on_phase_change(self, previous: Phase, current: Phase, timeline: Timeline) -> None:
        if current is not Phase.PRESTOP_DELAY:
            return
        if self.pid is not None:
            self._watch_app(self.pid)
        elif self.pattern is not None:
            finding = self._find_and_watch(self.pattern, timeline.drain_deadline)
            self._finding = asyncio.get_running_loop().create_task(finding)

    async def _find_and_watch(self, pattern: str, deadline: float) -> None:
        try:
            pid = await find_process_bounded(pattern, proc=self.proc, deadline=deadline)
        except (TimeoutError, OSError) as exc:
            self.observations.errors.append(f"process_exit: cannot find the app process: {exc}")
            logger.warning("cannot find the app process", extra={"fields": {"error": str(exc)}})
            self._on_unavailable()
            return
        self._watch_app(pid)

    def _watch_app(self, pid: int | None) -> None:
        self._watch = ProcessExitWatch(asyncio.get_running_loop(), self._on_exit)
        try:
            if pid is None:
                raise ProcessLookupError(f"no process matches {self.pattern!r}")
            self._watch.watch(pid)
        except OSError as exc:
            self.observations.errors.append(f"process_exit: cannot watch the app process: {exc}")
            logger.warning("cannot watch the app process", extra={"fields": {"error": str(exc)}})
            self._on_unavailable()
        else:
            logger.info("watching the app process", extra={"fields": {"pid": pid}})

    def close(self) -> None:
        if self._finding is not None:
            self._finding.cancel()
        if self._watch is not None:
            self._watch.close()
