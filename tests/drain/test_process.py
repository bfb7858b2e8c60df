from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from sidecar.drain.process import ProcessExitWatch, find_process


def fake_proc(root: Path, processes: dict[int, list[str]]) -> Path:
    for pid, argv in processes.items():
        (root / str(pid)).mkdir()
        (root / str(pid) / "cmdline").write_bytes(b"\0".join(arg.encode() for arg in argv) + b"\0")
    (root / "self").mkdir()
    return root


def test_process_find_matches_the_joined_command_line_lowest_pid_first(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path, {30: ["gunicorn", "app:wsgi"], 7: ["gunicorn: master"], 12: ["python", "x.py"]})
    assert find_process("gunicorn", proc=proc) == 7
    assert find_process(r"app:wsgi$", proc=proc) == 30
    assert find_process("gunicorn", proc=proc, exclude=frozenset({7})) == 30
    assert find_process("nginx", proc=proc) is None


@pytest.mark.anyio
async def test_process_exit_watch_fires_when_a_real_process_exits() -> None:
    child = await asyncio.create_subprocess_exec(sys.executable, "-c", "import time; time.sleep(0.2)")
    exited = asyncio.Event()
    watch = ProcessExitWatch(asyncio.get_running_loop(), exited.set)
    watch.watch(child.pid)
    await asyncio.wait_for(exited.wait(), 5)
    await child.wait()


@pytest.mark.anyio
async def test_process_exit_watch_refuses_a_missing_pid() -> None:
    watch = ProcessExitWatch(asyncio.get_running_loop(), lambda: None)
    with pytest.raises(ProcessLookupError):
        watch.watch(2**22 - 1)
