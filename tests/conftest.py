from __future__ import annotations

import signal
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest

from sidecar.simulate.lifeline import Lifeline
from sidecar.telemetry.metrics import configure_prometheus_client
from tests.e2e.sidecar_process import SidecarProcess

# The sidecar makes this process-global switch once at start-up (cli.main); tests build metrics
# without the CLI, so it is made here, once, for the whole session.
configure_prometheus_client()

# What the lifeline killed, named in the terminal summary (written at the session fixture's
# teardown, it would land in the last test's captured output and be seen only if that test failed).
LEFTOVERS = pytest.StashKey[list[str]]()
LEFTOVERS_KEY = "lifeline_leftovers"  # an xdist worker's lines, in its workeroutput


@pytest.fixture(scope="session", autouse=True)
def lifeline(pytestconfig: pytest.Config) -> Iterator[None]:
    """Every process the tests start carries this run's token, and those they start too: pytest
    killed (a CI timeout's SIGKILL, a SIGTERM or SIGHUP, which run no finaliser), its watchdog
    kills them all; at the end of the run, whatever a test left running is killed and named, so a
    leak is seen rather than cleaned up in silence. Under pytest-xdist each worker has its own
    lifeline and hands its lines to the controller, which names them."""
    with Lifeline() as line:
        yield
        leaked = line.leftovers()
    lines = [
        f"lifeline: killed pid {pid}, left running by the tests: {command or '(command line unreadable)'}"
        for pid, command in sorted(leaked.items())
    ]
    workeroutput: dict[str, object] | None = getattr(pytestconfig, "workeroutput", None)
    if workeroutput is not None:
        workeroutput[LEFTOVERS_KEY] = lines
    else:
        pytestconfig.stash.setdefault(LEFTOVERS, []).extend(lines)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    """pytest-xdist's controller, as a worker ends: the lines its lifeline left."""
    node.config.stash.setdefault(LEFTOVERS, []).extend(getattr(node, "workeroutput", {}).get(LEFTOVERS_KEY, []))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    for line in config.stash.get(LEFTOVERS, []):
        terminalreporter.write_line(line, yellow=True)


@pytest.fixture
def anyio_backend() -> str:
    """Async tests (`@pytest.mark.anyio`) run on asyncio, the loop the sidecar runs on."""
    return "asyncio"


@pytest.fixture
def processes() -> Iterator[list[SidecarProcess]]:
    """Sidecar processes a test started itself (`run` mode, say); every one is closed at the end."""
    started: list[SidecarProcess] = []
    yield started
    for process in started:
        process.close()


@pytest.fixture
def start_sidecar() -> Iterator[Callable[..., SidecarProcess]]:
    """Start `python -m sidecar serve ARGS` on a free port; every process is killed at the end."""
    started: list[SidecarProcess] = []

    def start(*args: str, env: dict[str, str] | None = None, prefix: Sequence[str] = ()) -> SidecarProcess:
        process = SidecarProcess.serve(*args, env=env, prefix=prefix)
        started.append(process)
        return process

    yield start
    for process in started:
        process.close()


@pytest.fixture(autouse=True)
def signal_mask_left_as_found() -> Iterator[None]:
    """A test that leaves signals blocked in this process fails: every child started afterwards
    would inherit the block and never die of its SIGTERM (it took the whole suite down once)."""
    before = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    yield
    after = signal.pthread_sigmask(signal.SIG_SETMASK, before)
    assert after == before, f"the test left these signals blocked: {sorted(after - before)}"
