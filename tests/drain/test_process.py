from __future__ import annotations

from pathlib import Path

from sidecar.drain.process import find_process


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
