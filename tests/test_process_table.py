"""Process groups and sessions read from /proc, against real processes."""

from __future__ import annotations

import os
import subprocess
import sys

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
