"""The processes a command has started, read from /proc while it runs (a child is known by its
parent's pid only until that parent dies), each known by pid and start time, so that a pid the
kernel hands out again is never taken for the process that had it; and the end of a test's process
started in a session of its own, with everything in that session."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

from sidecar.simulate.container import kill_session
from sidecar.simulate.lifeline import command_line

END_SECONDS = 5.0


@dataclasses.dataclass(frozen=True)
class Started:
    pid: int
    start_ticks: int  # /proc/PID/stat field 22: clock ticks after boot
    command: str


def _stat_fields(pid: int) -> list[str] | None:
    """/proc/PID/stat from field 3 (state) on: the name before it may hold spaces and parentheses."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2 :].split()


def descendants(root: int) -> list[Started]:
    """Every living process below `root` (children, theirs, ...), from one reading of /proc."""
    children: dict[int, list[int]] = {}
    ticks: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is None or fields[0] == "Z":
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
        ticks[int(entry.name)] = int(fields[19])
    found: list[Started] = []
    below = list(children.get(root, []))
    while below:
        pid = below.pop()
        found.append(Started(pid, ticks[pid], command_line(pid)))
        below.extend(children.get(pid, []))
    return found


def is_alive(process: Started) -> bool:
    """Still running (not a zombie waiting for its reaper), and still the same process."""
    fields = _stat_fields(process.pid)
    return fields is not None and fields[0] != "Z" and int(fields[19]) == process.start_ticks


def survivors(processes: list[Started]) -> list[Started]:
    return [process for process in processes if is_alive(process)]


def kill_all(processes: list[Started]) -> None:
    """SIGKILL those still alive: a failing test leaves nothing behind either."""
    for process in survivors(processes):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(process.pid, signal.SIGKILL)


def end_session(process: subprocess.Popen[Any]) -> None:
    """SIGKILL a process started with start_new_session=True and everything still in its session
    (a `run` wrapper's app in its own group, a shell's children), then reap it. Its own session
    also keeps a terminal's Ctrl-C to pytest, whose finalisers then come here."""
    kill_session(process.pid, leader_reaped=process.returncode is not None)
    process.wait(timeout=END_SECONDS)
