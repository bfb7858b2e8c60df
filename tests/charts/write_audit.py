"""Run a module as `python -m MODULE ARGS...` would, recording every path it opens for writing or
creates (a Python audit hook: https://docs.python.org/3/library/audit_events.html), one per line in
LOG. Usage: python write_audit.py LOG MODULE ARGS... (the test of a read-only root filesystem)."""

import os
import runpy
import sys

WRITING = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
CREATING = {"os.mkdir", "os.rename", "os.link", "os.symlink", "shutil.copyfile", "shutil.make_archive"}

log = open(sys.argv[1], "a", buffering=1)  # noqa: SIM115 (open for the whole run, before the hook)


def hook(event: str, args: tuple[object, ...]) -> None:
    if event == "open":
        path, _, flags = args
        if isinstance(path, int) or not isinstance(flags, int) or not flags & WRITING:
            return
    elif event in CREATING:
        path = args[1] if event in {"os.rename", "os.link", "os.symlink"} else args[0]
    else:
        return
    log.write(os.path.abspath(os.fsdecode(path)) + "\n")  # type: ignore[arg-type]


sys.addaudithook(hook)
module = sys.argv[2]
sys.argv = [module, *sys.argv[3:]]
runpy.run_module(module, run_name="__main__", alter_sys=True)
