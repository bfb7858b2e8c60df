"""Which live processes share a process group or a session, read from /proc/PID/stat. Reads only:
signalling them is the caller's business (run mode's supervisor, simulate's containers)."""

from __future__ import annotations

from pathlib import Path

PROC = Path("/proc")


def _stat_fields(stat: str) -> list[str]:
    # After the parenthesised command name (which may hold spaces and parentheses): state, ppid,
    # pgrp, session, ... (proc(5)).
    return stat[stat.rindex(")") + 2 :].split()


def members(*, group: int | None = None, session: int | None = None, proc: Path = PROC) -> list[int]:
    """Live processes (zombies left out: they have finished) in `group` and/or `session`."""
    found = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = _stat_fields((entry / "stat").read_text())
        except (OSError, ValueError):  # gone meanwhile
            continue
        if fields[0] in ("Z", "X"):  # a zombie or dead: finished
            continue
        if group is not None and int(fields[2]) != group:
            continue
        if session is not None and int(fields[3]) != session:
            continue
        found.append(int(entry.name))
    return found
