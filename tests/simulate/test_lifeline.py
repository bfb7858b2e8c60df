"""Every process a rehearsal starts dies with it: the parent-death signal (setpriv or the shim),
the exec check that keeps "command not found" an error, and the token's sweep, run by the
watchdog once its owner is SIGKILLed and on leaving the block. Real processes, waited on by
condition with a deadline."""

from __future__ import annotations

import os
import secrets
import shlex
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sidecar.simulate.lifeline import (
    LIFELINES_ENV,
    WATCHDOG_MODULE,
    Lifeline,
    carries,
    check_executable,
    setpriv_prefix,
    setpriv_with_pdeathsig,
    shim_prefix,
    sweep,
)
from tests.e2e.process_tree import descendants, is_alive
from tests.e2e.sidecar_process import wait_until
from tests.simulate.waiting import is_running

ROOT = Path(__file__).resolve().parent.parent.parent
GONE_SECONDS = 10.0
# Leaves the session it was started in, as a daemon does: out of reach of a session's kill.
ESCAPING = (sys.executable, "-c", "import os, time; os.setsid(); time.sleep(60)")


@pytest.fixture
def pids() -> Iterator[list[int]]:
    """Pids to SIGKILL at the end, should a test fail before they are gone."""
    started: list[int] = []
    yield started
    for pid in started:
        if is_running(pid):
            os.kill(pid, signal.SIGKILL)


def child_of_a_parent_that_is_then_sigkilled(prefix: str, pids: list[int]) -> int:
    """Start a parent that starts `sleep 60` under the parent-death prefix; SIGKILL the parent;
    returns the sleep's pid."""
    parent_code = (
        "import os, subprocess, sys, time\n"
        "from sidecar.simulate.lifeline import setpriv_prefix, setpriv_with_pdeathsig, shim_prefix\n"
        "prefix = shim_prefix(os.getpid()) if sys.argv[1] == 'shim' else setpriv_prefix(setpriv_with_pdeathsig())\n"
        # Its own session: what kills it is its parent's death, nothing sent to a group.
        "print(subprocess.Popen([*prefix, 'sleep', '60'], start_new_session=True).pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", parent_code, prefix], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    pids.append(parent.pid)
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    pids.append(child)
    parent.stdout.close()
    wait_until(lambda: Path(f"/proc/{child}/cmdline").read_bytes().startswith(b"sleep"), 10, what="the exec")
    parent.kill()
    parent.wait()
    return child


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
@pytest.mark.parametrize("prefix", ["setpriv", "shim"])
def test_parent_death_prefix_child_dies_when_its_parent_is_sigkilled(prefix: str, pids: list[int]) -> None:
    if prefix == "setpriv" and setpriv_with_pdeathsig() is None:
        pytest.skip("no setpriv with --pdeathsig (util-linux 2.33+)")
    child = child_of_a_parent_that_is_then_sigkilled(prefix, pids)
    wait_until(lambda: not is_running(child), GONE_SECONDS, what="the child to die with its parent")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_parent_death_shim_execs_the_command_in_its_own_pid_and_fails_like_exec() -> None:
    shell = subprocess.Popen([*shim_prefix(os.getpid()), "sh", "-c", "echo $$"], stdout=subprocess.PIPE, text=True)
    output, _ = shell.communicate(timeout=10)
    assert output.strip() == str(shell.pid)
    missing = subprocess.run(
        [*shim_prefix(os.getpid()), "no-such-command-anywhere"], capture_output=True, text=True, timeout=10, check=False
    )
    assert (missing.returncode, missing.stderr) == (127, "no-such-command-anywhere: No such file or directory\n")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_parent_death_shim_of_a_parent_already_gone_runs_nothing(tmp_path: Path) -> None:
    # The parent died between the fork and the prctl: the signal would never come.
    ran = tmp_path / "ran"
    orphan = subprocess.run([*shim_prefix(-1), "touch", str(ran)], timeout=10, check=False)
    assert orphan.returncode == 128 + signal.SIGKILL
    assert not ran.exists()


def test_setpriv_prefix_ends_setprivs_options() -> None:
    # A command whose first argument looks like an option is still the command's.
    assert setpriv_prefix("/usr/bin/setpriv") == ["/usr/bin/setpriv", "--pdeathsig", "KILL", "--"]


@pytest.mark.parametrize(
    ("command", "error"),
    [
        pytest.param("sh", None, id="on-the-path"),
        pytest.param("no-such-command-anywhere", FileNotFoundError, id="not-found"),
        pytest.param("{tmp}/absent", FileNotFoundError, id="path-not-found"),
        pytest.param("{tmp}/data", PermissionError, id="path-not-executable"),
        pytest.param("data", PermissionError, id="on-the-path-not-executable"),
    ],
)
def test_check_executable_raises_as_exec_would(tmp_path: Path, command: str, error: type[OSError] | None) -> None:
    (tmp_path / "data").write_text("not a program")
    env = {"PATH": f"{tmp_path}{os.pathsep}{os.environ['PATH']}"}
    if error is None:
        check_executable(command, env)
        return
    with pytest.raises(error):
        check_executable(command.format(tmp=tmp_path), env)


def test_sweep_kills_every_carrier_of_its_token_also_out_of_its_session_and_spares_the_rest(pids: list[int]) -> None:
    token = secrets.token_hex(8)
    carrying = {**os.environ, LIFELINES_ENV: f"{secrets.token_hex(8)} {token}"}
    script = f"{shlex.join(ESCAPING)} & echo $!; wait"
    carrier = subprocess.Popen(["sh", "-c", script], env=carrying, stdout=subprocess.PIPE, text=True)
    bystander = subprocess.Popen(["sleep", "60"], env={k: v for k, v in os.environ.items() if k != LIFELINES_ENV})
    pids.extend([carrier.pid, bystander.pid])
    assert carrier.stdout is not None
    escaped = int(carrier.stdout.readline())
    pids.append(escaped)
    wait_until(lambda: carries(escaped, token) and os.getsid(escaped) == escaped, 10, what="the escape")

    killed = sweep(token)

    assert {carrier.pid, escaped} <= killed
    assert carrier.wait(timeout=GONE_SECONDS) == -signal.SIGKILL
    wait_until(lambda: not is_running(escaped), GONE_SECONDS, what="the escaped carrier to die")
    assert bystander.poll() is None
    bystander.kill()
    bystander.wait()
    carrier.stdout.close()


OWNER = f"""\
import subprocess, sys, time
from sidecar.simulate.lifeline import Lifeline
with Lifeline():
    # No parent-death signal, and a session of its own: only the watchdog can end it.
    print(subprocess.Popen({list(ESCAPING)!r}).pid, flush=True)
    time.sleep(60)
"""


def test_lifeline_watchdog_kills_every_carrier_once_its_owner_is_sigkilled(pids: list[int]) -> None:
    owner = subprocess.Popen([sys.executable, "-c", OWNER], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    pids.append(owner.pid)
    assert owner.stdout is not None
    escaped = int(owner.stdout.readline())
    pids.append(escaped)
    owner.stdout.close()
    wait_until(lambda: os.getsid(escaped) == escaped, 10, what="the escape")
    (watchdog,) = [p for p in descendants(owner.pid) if WATCHDOG_MODULE in p.command]
    pids.append(watchdog.pid)

    owner.kill()
    owner.wait()

    wait_until(lambda: not is_running(escaped), GONE_SECONDS, what="the carrier to be killed")
    wait_until(lambda: not is_alive(watchdog), GONE_SECONDS, what="the watchdog to exit")


def test_lifeline_on_leaving_kills_its_carriers_and_restores_the_environment(pids: list[int]) -> None:
    before = os.environ.get(LIFELINES_ENV)
    with Lifeline() as lifeline:
        assert os.environ[LIFELINES_ENV].split()[-1] == lifeline.token
        carrier = subprocess.Popen(["sleep", "60"], start_new_session=True)
        pids.append(carrier.pid)
        # Popen returns once exec has begun (vfork): /proc/PID/environ is empty until the kernel
        # has laid out the new image's environment, a moment later.
        wait_until(lambda: carries(carrier.pid, lifeline.token), 10, what="the carrier")
    assert carrier.wait(timeout=GONE_SECONDS) == -signal.SIGKILL
    assert os.environ.get(LIFELINES_ENV) == before


def test_lifeline_leftovers_names_and_kills_what_carries_its_token_but_its_watchdog(pids: list[int]) -> None:
    with Lifeline() as lifeline:
        carrier = subprocess.Popen(["sleep", "61"], start_new_session=True)
        pids.append(carrier.pid)
        wait_until(lambda: carries(carrier.pid, lifeline.token), 10, what="the carrier")
        leftovers = lifeline.leftovers()
        assert leftovers == {carrier.pid: "sleep 61"}
        assert carrier.wait(timeout=GONE_SECONDS) == -signal.SIGKILL
        assert lifeline.leftovers() == {}, "the watchdog is not a leftover"
