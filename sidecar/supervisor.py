"""run mode's child: spawn it in its own process group, forward signals, reap it (and, as PID 1,
every orphan), stop it, see what it left behind in its group, and kill the group at the end.
Knows nothing of phases: app_process decides when each of these happens."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
from collections.abc import Callable, Sequence
from typing import Final

from sidecar import process_table

# Signals a wrapper passes straight on: reload, user-defined, terminal size, and the timers and
# notices whose default action would otherwise end the wrapper and orphan the app (as tini and
# dumb-init do). SIGTERM, SIGINT and SIGQUIT are not forwarded: they start the shutdown, and the
# app gets --stop-signal after the prestop delay (sidecar.signals).
FORWARDED_SIGNALS: Final = (
    signal.SIGHUP,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGWINCH,
    signal.SIGALRM,
    signal.SIGVTALRM,
    signal.SIGPROF,
    signal.SIGIO,
    signal.SIGPWR,
)
EXIT_NOT_EXECUTABLE: Final = 126
EXIT_NOT_FOUND: Final = 127


# The process groups of children started and not yet reaped. Process-wide on purpose: the
# deadline watchdog ends the whole process from its own thread when the loop is stuck, and must
# take these groups with it, or the app would outlive its wrapper as an orphan.
STARTED_GROUPS: set[int] = set()


def kill_started_groups() -> None:
    """SIGKILL every started child's group; safe from any thread (the watchdog's last words)."""
    for pgid in list(STARTED_GROUPS):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)


class SpawnError(Exception):
    def __init__(self, exit_status: int, message: str) -> None:
        super().__init__(message)
        self.exit_status = exit_status


def exit_status_of(wait_status: int) -> int:
    """A shell's convention: the exit code, or 128 + N for a child killed by signal N."""
    if os.WIFSIGNALED(wait_status):
        return 128 + os.WTERMSIG(wait_status)
    return os.waitstatus_to_exitcode(wait_status)


class Child:
    def __init__(self, argv: Sequence[str], on_exit: Callable[[int], None]) -> None:
        self.argv = list(argv)
        self._on_exit = on_exit
        self.pid: int | None = None
        self.exit_status: int | None = None

    @property
    def is_running(self) -> bool:
        return self.pid is not None and self.exit_status is None

    def start(self) -> None:
        """Spawn the command in a new process group (so a terminal's Ctrl-C reaches only us, and
        the final SIGKILL reaches its whole tree). Raises SpawnError with 127 or 126."""
        try:
            process = subprocess.Popen(self.argv, process_group=0)  # noqa: S603 - the operator's command
        except FileNotFoundError:
            raise SpawnError(EXIT_NOT_FOUND, f"{self.argv[0]}: command not found") from None
        except OSError as exc:  # not executable, a directory, not a binary the kernel can run
            raise SpawnError(EXIT_NOT_EXECUTABLE, f"{self.argv[0]}: cannot execute: {exc.strerror}") from None
        # From here on the pid is reaped by reap() (SIGCHLD), never by Popen.
        process.returncode = 0
        self.pid = process.pid
        STARTED_GROUPS.add(process.pid)

    def reap(self) -> None:
        """On SIGCHLD: collect every exited child. As PID 1 that includes orphans re-parented to
        us; left alone they would stay zombies for the life of the container."""
        while True:
            try:
                pid, wait_status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self.pid and self.exit_status is None:
                # Its group outlives it while processes it left behind live on: the watchdog's
                # last words must still reach them.
                if not process_table.members(group=pid):
                    STARTED_GROUPS.discard(pid)
                self.exit_status = exit_status_of(wait_status)
                self._on_exit(self.exit_status)

    def send(self, sig: signal.Signals) -> None:
        if self.pid is not None and self.exit_status is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def group_is_alive(self) -> bool:
        """Whether a process of the child's group is still running (zombies left out: an orphan
        re-parented to a slow reaper is no longer running). The child exiting may leave its group
        behind: a shell that died at its stop signal orphans the server it started."""
        return self.pid is not None and bool(process_table.members(group=self.pid))

    def send_group(self, sig: signal.Signals) -> None:
        if self.pid is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, sig)

    def kill_group(self) -> None:
        """SIGKILL the child's whole process group, as the kubelet's SIGKILL would the container
        (after the child's exit too: what it left behind keeps the group)."""
        if self.pid is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)
            STARTED_GROUPS.discard(self.pid)

    def left_behind(self) -> list[int]:
        """The live processes of the child's group other than the child: daemons, workers, a
        shell's background jobs. A group id is not reused while any member lives."""
        if self.pid is None:
            return []
        return [pid for pid in process_table.members(group=self.pid) if pid != self.pid]


def install_child_signals(loop: asyncio.AbstractEventLoop, child: Child) -> Callable[[], None]:
    """SIGCHLD reaps; the forwarded signals go to the child at once. Returns an uninstaller."""
    loop.add_signal_handler(signal.SIGCHLD, child.reap)
    for sig in FORWARDED_SIGNALS:
        loop.add_signal_handler(sig, child.send, sig)

    def uninstall() -> None:
        for sig in (signal.SIGCHLD, *FORWARDED_SIGNALS):
            loop.remove_signal_handler(sig)

    return uninstall
