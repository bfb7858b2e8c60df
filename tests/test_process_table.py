"""Process groups and sessions read from /proc, against real processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sidecar import process_table


def test_process_table_members_of_a_group_and_a_session_are_its_live_processes() -> None:
    leader = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"], start_new_session=True)
    try:
        assert process_table.members(group=leader.pid) == [leader.pid]
        assert process_table.members(session=leader.pid) == [leader.pid]
        assert os.getpid() in process_table.members(group=os.getpgrp())
        assert leader.pid not in process_table.members(group=os.getpgrp())
    finally:
        leader.kill()
        leader.wait()


def test_process_table_members_leave_out_zombies() -> None:
    exited = subprocess.Popen([sys.executable, "-c", "pass"], start_new_session=True)
    os.waitid(os.P_PID, exited.pid, os.WEXITED | os.WNOWAIT)  # exited, not reaped: a zombie
    try:
        assert process_table.members(group=exited.pid) == []
    finally:
        exited.wait()


@pytest.mark.parametrize(
    ("stat", "group"),
    [
        pytest.param("42 (python3 -m app) S 1 40 40 0 -1", 40, id="running"),
        pytest.param("42 (a (weird) name) R 1 41 40 0 -1", 41, id="parenthesised-name"),
        pytest.param("42 (sh) Z 1 40 40 0 -1", None, id="zombie-is-not-running"),
    ],
)
def test_process_table_members_read_proc_stat(tmp_path: Path, stat: str, group: int | None) -> None:
    (tmp_path / "42").mkdir()
    (tmp_path / "42" / "stat").write_text(stat)
    expected = [] if group is None else [42]
    assert process_table.members(group=40 if group is None else group, proc=tmp_path) == expected
    assert process_table.members(session=40, proc=tmp_path) == expected
