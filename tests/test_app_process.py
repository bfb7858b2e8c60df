from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Iterator, Sequence

import pytest

from sidecar.app_process import AppProcess
from sidecar.deadline import Budget
from sidecar.lifecycle import DrainEndSource, Outcome, Phase, Timeline, Trigger
from sidecar.supervisor import SpawnError
from sidecar.telemetry.report import Observations

# Generous: a child's start-up on a loaded 2-core machine; a passing test never waits this long.
WAIT_SECONDS = 10
SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]

# A child that connects back to the test, and says "+", once its handlers are in place. On SIGUSR1 or SIGUSR2 it
# sends the signal's name and exits 42; it ignores SIGTERM; when the test closes the connection
# it exits 3 on its own. Nothing but these (or a SIGKILL) ends it.
CHILD = """\
import signal, socket, sys
def stop(sig, frame):
    link.sendall(signal.Signals(sig).name.encode())
    sys.exit(42)
signal.signal(signal.SIGUSR1, stop)
signal.signal(signal.SIGUSR2, stop)
signal.signal(signal.SIGTERM, signal.SIG_IGN)
link = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
link.sendall(b"+")
while link.recv(1):
    pass
sys.exit(3)
"""


class ChildLink:
    """The test's end of CHILD's loopback connection: an event when it is there, what it said."""

    def __init__(self) -> None:
        self.connected = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def __aenter__(self) -> ChildLink:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader, self._writer = reader, writer
        self.connected.set()

    @property
    def command(self) -> list[str]:
        assert self._server is not None
        return [sys.executable, "-c", CHILD, str(self._server.sockets[0].getsockname()[1])]

    async def wait_connected(self) -> None:
        """The child runs, with its signal handlers in place."""
        await asyncio.wait_for(self.connected.wait(), WAIT_SECONDS)
        assert self._reader is not None
        assert await asyncio.wait_for(self._reader.readexactly(1), WAIT_SECONDS) == b"+"

    async def said(self) -> bytes:
        """Everything the child sent before it exited."""
        assert self._reader is not None
        return await asyncio.wait_for(self._reader.read(), WAIT_SECONDS)

    def release(self) -> None:
        """Tell the child to exit 3 on its own."""
        if self._writer is not None:
            self._writer.close()


class AppUnderTest:
    def __init__(self, command: Sequence[str], stop_signal: signal.Signals = signal.SIGUSR1) -> None:
        self.timeline = Timeline(Budget(30, 1, 1))
        self.observations = Observations()
        self.exits: list[None] = []
        self.exited = asyncio.Event()
        self.app = AppProcess(
            command,
            stop_signal=stop_signal,
            timeline=self.timeline,
            observations=self.observations,
            on_exit=self._on_exit,
        )
        self.timeline.add_listener(self.app.on_phase_change)

    def _on_exit(self) -> None:
        self.exits.append(None)
        self.exited.set()

    def check(self) -> str | None:
        readiness, liveness = self.app.readiness()["app"](), self.app.liveness()["app"]()
        assert readiness == liveness
        return readiness

    def event_names(self) -> list[str]:
        return [name for name, _, _ in self.observations.events]

    async def wait_exited(self) -> None:
        await asyncio.wait_for(self.exited.wait(), WAIT_SECONDS)


@contextlib.contextmanager
def started(under_test: AppUnderTest) -> Iterator[AppUnderTest]:
    """Start the app; at the end remove the loop's signal handlers and leave no child behind."""
    app = under_test.app
    try:
        app.start()
        yield under_test
    finally:
        app.close()
        pid = app.child.pid
        if pid is not None and app.child.exit_status is None:
            for kill in (os.killpg, os.kill):  # not kill_group alone: it is under test
                with contextlib.suppress(ProcessLookupError):
                    kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)


@pytest.mark.anyio
async def test_app_process_check_says_not_started_then_passes_then_names_the_exit_status() -> None:
    async with ChildLink() as link:
        under_test = AppUnderTest(link.command)
        assert under_test.observations.has_app_process
        assert under_test.check() == "not started"
        with started(under_test):
            await link.wait_connected()
            assert under_test.check() is None
            assert under_test.app.start_fields() == {"app_pid": under_test.app.child.pid}
            link.release()
            await under_test.wait_exited()
            assert under_test.check() == "exited with status 3"
    assert under_test.app.exit_status() == 3
    assert under_test.exits == [None]


@pytest.mark.anyio
async def test_app_process_exit_is_observed_for_the_report() -> None:
    async with ChildLink() as link:
        under_test = AppUnderTest(link.command)
        with started(under_test):
            await link.wait_connected()
            link.release()
            await under_test.wait_exited()
    assert under_test.observations.app_exit_status == 3
    assert [(name, attributes) for name, _, attributes in under_test.observations.events] == [
        ("app exit", {"status": "3"})
    ]
    assert under_test.timeline.phase is Phase.RUNNING, "the part reports the exit; it does not decide the phase"


@pytest.mark.anyio
async def test_app_process_stop_signal_is_sent_when_the_drain_begins() -> None:
    async with ChildLink() as link:
        under_test = AppUnderTest(link.command, stop_signal=signal.SIGUSR1)
        timeline = under_test.timeline
        with started(under_test):
            await link.wait_connected()
            timeline.begin(Trigger.SIGNAL, time.monotonic())
            assert "stop signal sent" not in under_test.event_names(), "the app serves on through the prestop delay"
            assert under_test.check() is None

            assert under_test.observations.stop_signal is None
            timeline.advance(Phase.DRAIN, time.monotonic())
            assert await link.said() == b"SIGUSR1"
            assert under_test.observations.stop_signal == "SIGUSR1", "the report names the signal sent"
            await under_test.wait_exited()
    assert under_test.app.exit_status() == 42
    assert under_test.event_names() == ["stop signal sent", "app exit"]
    assert under_test.observations.events[0][2] == {"signal": "SIGUSR1"}


@pytest.mark.anyio
async def test_app_process_still_running_at_the_report_is_killed_with_status_137() -> None:
    async with ChildLink() as link:
        under_test = AppUnderTest(link.command, stop_signal=signal.SIGTERM)  # which the child ignores
        timeline = under_test.timeline
        with started(under_test):
            await link.wait_connected()
            timeline.begin(Trigger.SIGNAL, time.monotonic())
            timeline.advance(Phase.DRAIN, time.monotonic())
            assert under_test.check() is None
            timeline.end_drain(DrainEndSource.DEADLINE, Outcome.TIMEOUT, time.monotonic())
            await under_test.wait_exited()
            assert await link.said() == b""
            await asyncio.wait_for(under_test.app.before_report(), WAIT_SECONDS)
    assert under_test.app.child.exit_status == 137, "reaped, not the fallback for an exit never seen"
    assert under_test.app.exit_status() == 137
    assert under_test.observations.app_exit_status == 137
    assert under_test.check() == "exited with status 137"


@pytest.mark.anyio
async def test_app_process_forwards_user_signals_to_the_child() -> None:
    async with ChildLink() as link:
        under_test = AppUnderTest(link.command)
        with started(under_test):
            await link.wait_connected()
            os.kill(os.getpid(), signal.SIGUSR2)  # to us, the wrapper: handled on the loop, passed on
            assert await link.said() == b"SIGUSR2"
            await under_test.wait_exited()
    assert under_test.app.exit_status() == 42
    assert under_test.timeline.phase is Phase.RUNNING


@pytest.mark.anyio
async def test_app_process_missing_command_raises_spawn_error_127() -> None:
    under_test = AppUnderTest(["shutdown-sidecar-test-no-such-command"])
    with pytest.raises(SpawnError) as raised, started(under_test):
        pass
    assert raised.value.exit_status == 127
    assert under_test.check() == "not started"


@pytest.mark.anyio
async def test_app_process_close_removes_the_signal_handlers_start_installed() -> None:
    under_test = AppUnderTest(SLEEPER)
    handled = (signal.SIGCHLD, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGWINCH)
    assert all(signal.getsignal(sig) is signal.SIG_DFL for sig in handled)
    with started(under_test):
        assert all(signal.getsignal(sig) is not signal.SIG_DFL for sig in handled)
    assert all(signal.getsignal(sig) is signal.SIG_DFL for sig in handled)
