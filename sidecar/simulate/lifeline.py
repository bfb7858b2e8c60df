"""No process outlives the rehearsal that started it, however the rehearsal ends (even SIGKILLed):
a token in its environment, inherited by every process it starts and theirs, and a watchdog that
SIGKILLs every carrier once the rehearsal is gone; each process it starts directly also gets the
kernel's parent-death signal. Decides nothing about when a container is signalled (the kubelet's)."""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Collection, Mapping
from pathlib import Path
from types import TracebackType
from typing import Final

# Read by no one but the sweep: plumbing that every descendant inherits, not a setting
# (sidecar.config owns those). Tokens separated by spaces: a rehearsal started by a tracked run
# (a test session, say) carries both tokens, and either sweep finds it.
LIFELINES_ENV: Final = "SHUTDOWN_SIDECAR_LIFELINES"
WATCHDOG_MODULE: Final = "sidecar.simulate.lifeline"
# A sweep repeats until a pass finds no carrier: a carrier may fork while the previous pass kills.
SWEEP_SECONDS: Final = 5.0
WATCHDOG_EXIT_SECONDS: Final = 10.0
PR_SET_PDEATHSIG: Final = 1  # <linux/prctl.h>

# Where setpriv is missing: the same prctl, made in a process of its own that then execs the
# command (`python -I -S -c SHIM PARENT_PID CMD ARGS...`). Never in a preexec_fn: that runs between
# fork and exec in a process with threads (asyncio's resolver and child watcher), where a lock held
# by another thread at the fork (malloc, the import lock that ctypes needs) is never released.
PDEATHSIG_SHIM: Final = f"""\
import ctypes, errno, os, signal, sys
parent, argv = int(sys.argv[1]), sys.argv[2:]
ctypes.CDLL(None, use_errno=True).prctl({PR_SET_PDEATHSIG}, int(signal.SIGKILL), 0, 0, 0)
if os.getppid() != parent:  # the parent died before the prctl: the signal will never come
    os._exit(128 + signal.SIGKILL)
try:
    os.execvp(argv[0], argv)
except OSError as error:
    sys.stderr.write(f"{{argv[0]}}: {{error.strerror}}\\n")
    os._exit(127 if error.errno == errno.ENOENT else 126)
"""


@functools.cache
def setpriv_with_pdeathsig() -> str | None:
    """util-linux's setpriv, when it has --pdeathsig (2.33 and later); asked once per process."""
    path = shutil.which("setpriv")
    if path is None:
        return None
    try:
        usage = subprocess.run(  # noqa: S603 - no shell; setpriv from the PATH, as a shell would find it
            [path, "--help"], capture_output=True, text=True, timeout=5, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    return path if "--pdeathsig" in usage else None


def parent_death_prefix() -> list[str]:
    """An argv prefix under which a command starts with PR_SET_PDEATHSIG = SIGKILL, then execs (same
    pid, same session): the kernel kills it when its parent dies, SIGKILLed or not. Empty where
    Linux's prctl is not there: the watchdog and the rehearsal's own clean-up remain.

    The kernel sends it when the *thread* that forked the child exits, not the process: start such
    a command from a thread that lives as long as the run (the event loop's), never from a worker
    thread (asyncio.to_thread), whose exit when its pool retires it would kill the child.
    setpriv leaves a window between the fork and its prctl in which a dying parent is not noticed;
    the child carries the token by then, so the watchdog covers it. The shim checks its parent."""
    if not sys.platform.startswith("linux"):
        return []
    setpriv = setpriv_with_pdeathsig()
    return shim_prefix(os.getpid()) if setpriv is None else setpriv_prefix(setpriv)


def setpriv_prefix(setpriv: str) -> list[str]:
    return [setpriv, "--pdeathsig", "KILL", "--"]


def shim_prefix(parent: int) -> list[str]:
    """PDEATHSIG_SHIM's prefix, for a child of `parent`."""
    return [sys.executable, "-I", "-S", "-c", PDEATHSIG_SHIM, str(parent)]


def check_executable(command: str, env: Mapping[str, str]) -> None:
    """Raise FileNotFoundError or PermissionError as exec would for `command` (searched on the PATH
    in `env`): under a prefix the exec happens in the child, where its failure would only be a log
    line and an exit status, not the error that names the command."""
    if shutil.which(command, path=env.get("PATH", os.defpath)) is not None:
        return
    if os.sep in command:
        candidates = [Path(command)]
    else:
        candidates = [Path(directory or ".", command) for directory in env.get("PATH", os.defpath).split(os.pathsep)]
    if any(candidate.exists() for candidate in candidates):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), command)
    raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), command)


def carries(pid: int, token: str) -> bool:
    """Whether the process started with `token` among its lifelines. /proc/PID/environ is the
    environment it was exec'd with (a zombie's is empty); another user's cannot be read."""
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False
    prefix = f"{LIFELINES_ENV}=".encode()
    for entry in environ.split(b"\0"):
        if entry.startswith(prefix):
            return token.encode() in entry.removeprefix(prefix).split()
    return False


def kill_carrier(pid: int, token: str) -> bool:
    """SIGKILL `pid` if it carries `token`; whether it did."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return False
    except (AttributeError, OSError):
        # No pidfd (Linux before 5.3): a pid reused between the check and the kill is the risk.
        if not carries(pid, token):
            return False
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
        return True
    try:
        # Checked once the pidfd is open: it names the process whose environment is read then,
        # so a pid reused in between is never signalled.
        if not carries(pid, token):
            return False
        signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        return True
    except ProcessLookupError:
        return False
    finally:
        os.close(pidfd)


def process_ids() -> list[int]:
    """Every pid in /proc now; none where there is no /proc."""
    try:
        return [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()]
    except OSError:
        return []


def carriers(token: str, exclude: Collection[int] = ()) -> list[int]:
    """The pids that carry `token` now (but `exclude`)."""
    return [pid for pid in process_ids() if pid not in exclude and carries(pid, token)]


def command_line(pid: int) -> str:
    """The process's command line, words joined by spaces; empty when it cannot be read (gone,
    another user's, a kernel thread)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def sweep(token: str, exclude: Collection[int] = ()) -> set[int]:
    """SIGKILL every process that carries `token` (but `exclude`), pass after pass until one finds
    none or SWEEP_SECONDS have passed; returns their pids. Nothing where there is no /proc."""
    deadline = time.monotonic() + SWEEP_SECONDS
    killed: set[int] = set()
    while time.monotonic() < deadline:
        found = {pid for pid in process_ids() if pid not in exclude and kill_carrier(pid, token)}
        if not found:
            break
        killed |= found
    return killed


class Lifeline:
    """For the length of a `with` block: a new token in this process's environment (so in every
    process it starts from then on, and theirs), and a watchdog process that sweeps the token
    once this process has exited, however. On leaving the block the sweep runs at once, and the
    environment is restored."""

    def __init__(self) -> None:
        self.token = secrets.token_hex(8)
        self._watchdog: subprocess.Popen[bytes] | None = None
        self._previous: str | None = None

    def __enter__(self) -> Lifeline:
        self._previous = os.environ.get(LIFELINES_ENV)
        os.environ[LIFELINES_ENV] = f"{self._previous} {self.token}" if self._previous else self.token
        # Found by the same import path as this process's: a rehearsal run from a source tree too.
        package_root = str(Path(__file__).resolve().parents[2])
        path = os.pathsep.join(filter(None, (package_root, os.environ.get("PYTHONPATH"))))
        with contextlib.suppress(OSError):  # no watchdog: the parent-death signal and clean-up remain
            self._watchdog = subprocess.Popen(  # noqa: S603 - no shell; this interpreter, this package
                [sys.executable, "-m", WATCHDOG_MODULE, self.token],
                stdin=subprocess.PIPE,  # its end of the pipe closes when this process exits, however
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env={**os.environ, "PYTHONPATH": path},
                # Its own session: a terminal's Ctrl-C, or a kill of this process's group, leaves
                # it to do its work. It has no parent-death signal, for the same reason.
                start_new_session=True,
            )
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        try:
            self.close()
        finally:
            if self._previous is None:
                os.environ.pop(LIFELINES_ENV, None)
            else:
                os.environ[LIFELINES_ENV] = self._previous

    def leftovers(self) -> dict[int, str]:
        """SIGKILL now whatever carries this lifeline's token, but this process and its watchdog;
        returns their pids and command lines: what a run left behind, to be named, not just killed."""
        exclude = {os.getpid()} | ({self._watchdog.pid} if self._watchdog is not None else set())
        found = {pid: command_line(pid) for pid in carriers(self.token, exclude)}
        sweep(self.token, exclude=exclude)
        return found

    def close(self) -> None:
        """Sweep now: by the watchdog, which then exits, or here when it is not running."""
        watchdog, self._watchdog = self._watchdog, None
        if watchdog is not None and watchdog.stdin is not None:
            watchdog.stdin.close()
            try:
                if watchdog.wait(timeout=WATCHDOG_EXIT_SECONDS) == 0:
                    return
            except subprocess.TimeoutExpired:
                watchdog.kill()
                watchdog.wait()
        sweep(self.token, exclude={os.getpid()})


def watch(token: str) -> None:
    """The watchdog: wait for the end of stdin (the rehearsal exited or was killed: the kernel
    closes its end of the pipe either way), then sweep the token."""
    while sys.stdin.buffer.read(4096):
        pass  # nothing is written; a read returns b"" at the end
    sweep(token, exclude={os.getpid()})


if __name__ == "__main__":
    watch(sys.argv[1])
