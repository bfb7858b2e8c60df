"""A simulated container's processes on this machine, as the container runtime handles them. Its
main process leads a session of its own, standing for the container's PID namespace: signals go
to the main process, as the runtime sends them, and the SIGKILL goes to every process in the
session, as the runtime kills the container's cgroup (a `run` wrapper's app sits in its own
process group, but not its own session). Each has the parent-death signal (sidecar.simulate.lifeline):
it dies with the rehearsal, SIGKILLed or not. Decides nothing about when: that is the kubelet's."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final

from sidecar import process_table
from sidecar.config import ENV_PREFIX
from sidecar.simulate.lifeline import check_executable, parent_death_prefix
from sidecar.simulate.podspec import SIDECAR_URL_ENV
from sidecar.simulate.records import Clock, ContainerRecord

TERMINATION_MESSAGE_LIMIT: Final = 4096  # the kubelet's cap on a termination message
LOG_TAIL_BYTES: Final = 2048


def exit_status_of(returncode: int) -> int:
    """asyncio's returncode (-N when killed by signal N) in a shell's convention (128 + N)."""
    return 128 - returncode if returncode < 0 else returncode


def environment(extra: Mapping[str, str]) -> dict[str, str]:
    """This process's environment without its SIDECAR_* variables and SHUTDOWN_SIDECAR_URL (a
    rehearsal is what its flags say; each pod has its own sidecar), plus the container's own."""
    env = {
        name: value for name, value in os.environ.items() if not name.startswith(ENV_PREFIX) and name != SIDECAR_URL_ENV
    }
    env.update(extra)
    return env


async def spawn(argv: Sequence[str], env: Mapping[str, str], log_path: Path) -> asyncio.subprocess.Process:
    """Start the container's main process, its output to `log_path`. Raises FileNotFoundError
    or OSError when the command cannot run. Call it from the event loop's thread: the parent-death
    signal follows the thread that forks (see parent_death_prefix)."""
    check_executable(argv[0], env)
    with open(log_path, "wb") as log:  # noqa: ASYNC230 - a local file, opened once per container
        return await asyncio.create_subprocess_exec(
            *parent_death_prefix(),  # execs the command: the same pid, signalled as the runtime would
            *argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env),
            start_new_session=True,  # its own session and group: a terminal's Ctrl-C reaches none of it
        )


def kill_session(session_id: int, *, leader_reaped: bool = False) -> None:
    """SIGKILL the container: its process group first (at once), then any other group in its
    session. Once the leader is reaped its pid may be reused, so only its session's remaining
    members are looked for (a process keeps its session id until it starts its own)."""
    if not leader_reaped:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(session_id, signal.SIGKILL)
    for pid in process_table.members(session=session_id):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def read_termination_message(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace")[:TERMINATION_MESSAGE_LIMIT]
    except FileNotFoundError:
        return None


def log_tail(path: Path) -> str:
    """The last lines a container wrote: the reason a start failed."""
    try:
        with open(path, "rb") as log:
            log.seek(0, os.SEEK_END)
            log.seek(max(0, log.tell() - LOG_TAIL_BYTES))
            return log.read().decode(errors="replace").strip()
    except FileNotFoundError:
        return ""


class ContainerProcess:
    """One started container: its main process signalled, its session SIGKILLed, and its exit
    (time, status, termination message) written to its record when reaped."""

    def __init__(
        self,
        process: asyncio.subprocess.Process,
        record: ContainerRecord,
        workdir: Path,
        clock: Clock,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.record = record
        # The environment it runs with: an exec hook runs in the container, so with this too.
        self.env: Mapping[str, str] = environment({}) if env is None else env
        self.exited = asyncio.Event()
        self.log_path = log_path(workdir, record.name)
        self._process = process
        self._termination_log = termination_log_path(workdir, record.name)
        self._clock = clock

    @classmethod
    async def start(
        cls, argv: Sequence[str], env: Mapping[str, str], record: ContainerRecord, workdir: Path, clock: Clock
    ) -> ContainerProcess:
        """Raises FileNotFoundError or OSError when the command cannot run."""
        container_env = environment(env)
        spawning = clock()
        process = await spawn(argv, container_env, log_path(workdir, record.name))
        record.started_at = clock()
        record.spawn_seconds = record.started_at - spawning
        return cls(process, record, workdir, clock, container_env)

    @property
    def pid(self) -> int:
        """The main process's PID (the command is exec'd under the parent-death prefix: the same)."""
        return self._process.pid

    async def reap(self) -> int:
        """Wait for the exit, record it and set `exited`; returns the exit status."""
        status = exit_status_of(await self._process.wait())
        self.record.exited_at = self._clock()
        self.record.exit_status = status
        self.record.termination_message = read_termination_message(self._termination_log)
        self.exited.set()
        return status

    def send(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            self._process.send_signal(sig)

    def kill(self) -> None:
        kill_session(self._process.pid, leader_reaped=self.exited.is_set())

    def last_log_line(self) -> str:
        return (log_tail(self.log_path).splitlines() or ["(no output)"])[-1]


def log_path(workdir: Path, container: str) -> Path:
    return workdir / f"{container}.log"


def termination_log_path(workdir: Path, container: str) -> Path:
    return workdir / f"{container}.termination-log"
