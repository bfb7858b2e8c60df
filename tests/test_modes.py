from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import sys
from collections.abc import Callable

import pytest
from prometheus_client import CollectorRegistry

from sidecar.app_process import AppProcess
from sidecar.config import load_settings
from sidecar.deadline import Budget
from sidecar.drain.connections import ConnectionWatch
from sidecar.drain.process import WatchedProcess
from sidecar.drain.sidecar_sigterm import SidecarSigterm
from sidecar.lifecycle import DrainEndSource, Phase, Timeline, Trigger
from sidecar.modes import PartContext, choose_parts
from sidecar.parts import Part
from sidecar.shutdown import ShutdownSequence
from sidecar.telemetry.metrics import ShutdownMetrics
from sidecar.telemetry.report import Observations

COMMAND = ["app", "--serve"]  # never started here
BUDGET = Budget(30, 5, 1)
NO_PRESTOP_DELAY = Budget(30, 0, 1)


def make_context(budget: Budget = BUDGET) -> PartContext:
    timeline = Timeline(budget)

    async def report(_: Timeline) -> None:
        return None

    return PartContext(
        timeline=timeline,
        metrics=ShutdownMetrics(CollectorRegistry(), version="test", grace_period_seconds=30),
        observations=Observations(),
        sequence=ShutdownSequence(timeline, report=report),
    )


@pytest.mark.parametrize(
    ("flags", "command", "kinds", "sources"),
    [
        pytest.param({}, None, [], set(), id="serve"),
        pytest.param({"app_port": "8080"}, None, [ConnectionWatch], {DrainEndSource.CONNECTIONS}, id="serve-app-port"),
        pytest.param({"watch_pid": "4242"}, None, [WatchedProcess], {DrainEndSource.PROCESS_EXIT}, id="watch-pid"),
        pytest.param(
            {"watch_process": "gunicorn"}, None, [WatchedProcess], {DrainEndSource.PROCESS_EXIT}, id="watch-process"
        ),
        pytest.param(
            {"native_sidecar": "true"}, None, [SidecarSigterm], {DrainEndSource.SIDECAR_SIGTERM}, id="native-sidecar"
        ),
        pytest.param({}, COMMAND, [AppProcess], {DrainEndSource.PROCESS_EXIT}, id="run"),
        pytest.param(
            {"app_port": "8080"},
            COMMAND,
            [ConnectionWatch, AppProcess],  # the app process last: it signals the app after others observe,
            {DrainEndSource.PROCESS_EXIT, DrainEndSource.CONNECTIONS},
            id="run-app-port",
        ),
        pytest.param(
            {"app_port": "8080", "watch_process": "gunicorn", "native_sidecar": "true"},
            None,
            [WatchedProcess, ConnectionWatch, SidecarSigterm],
            {DrainEndSource.PROCESS_EXIT, DrainEndSource.CONNECTIONS, DrainEndSource.SIDECAR_SIGTERM},
            id="serve-all-sources",
        ),
    ],
)
def test_modes_choose_parts_from_the_settings_and_their_drain_sources(
    flags: dict[str, str], command: list[str] | None, kinds: list[type], sources: set[DrainEndSource]
) -> None:
    parts = choose_parts(load_settings(flags, {}), command, make_context())
    assert [type(part) for part in parts] == kinds
    assert frozenset().union(*(part.drain_sources for part in parts)) == sources


def test_modes_run_hands_the_app_process_its_command_and_stop_signal() -> None:
    context = make_context()
    [part] = choose_parts(load_settings({"stop_signal": "quit"}, {}), COMMAND, context)
    assert isinstance(part, AppProcess)
    assert part.child.argv == COMMAND
    assert part.stop_signal is signal.SIGQUIT
    assert part.timeline is context.timeline
    assert part.observations is context.observations


def test_modes_watch_settings_reach_the_watched_process() -> None:
    [by_pid] = choose_parts(load_settings({"watch_pid": "4242"}, {}), None, make_context())
    [by_pattern] = choose_parts(load_settings({"watch_process": "gunicorn"}, {}), None, make_context())
    assert isinstance(by_pid, WatchedProcess)
    assert isinstance(by_pattern, WatchedProcess)
    assert (by_pid.pid, by_pid.pattern) == (4242, None)
    assert (by_pattern.pid, by_pattern.pattern) == (None, "gunicorn")


def test_modes_native_sidecar_sigterm_finishes_the_shutdown_at_once() -> None:
    context = make_context()
    [part] = choose_parts(load_settings({"native_sidecar": "true"}, {}), None, context)
    assert part.on_signal(signal.SIGTERM)
    assert context.timeline.phase is Phase.PRESTOP_DELAY
    assert set(context.sequence.observed) == {DrainEndSource.SIDECAR_SIGTERM}


@pytest.mark.parametrize("source", list(DrainEndSource), ids=str)
def test_modes_drain_ended_reports_its_source_once_the_shutdown_has_begun(source: DrainEndSource) -> None:
    context = make_context()
    report_end = context.drain_ended(source)
    report_end()
    assert context.sequence.observed == {}, "before t0 there is no drain to end"
    context.sequence.begin(Trigger.SIGNAL)
    report_end()
    assert set(context.sequence.observed) == {source}


async def run_until_the_drain_ends(context: PartContext, part: Part, end_it: Callable[[], None]) -> None:
    """Run the sequence (no prestop delay) and the part, as the sidecar would; begin the shutdown,
    `end_it`, and return once the sequence has finished."""
    context.timeline.add_listener(part.on_phase_change)
    sequence_task = asyncio.create_task(context.sequence.run())
    part_task = asyncio.create_task(part.run())
    try:
        await asyncio.sleep(0)  # the part's first step: a connection watch takes its first sample
        context.sequence.begin(Trigger.SIGNAL)
        end_it()
        await asyncio.wait_for(sequence_task, 10)
    finally:
        part.close()
        for task in (sequence_task, part_task):
            task.cancel()
        await asyncio.gather(sequence_task, part_task, return_exceptions=True)


@pytest.mark.anyio
async def test_modes_watched_process_exit_ends_the_drain_with_process_exit() -> None:
    context = make_context(NO_PRESTOP_DELAY)
    app = await asyncio.create_subprocess_exec(sys.executable, "-c", "import time; time.sleep(60)")
    try:
        [part] = choose_parts(load_settings({"watch_pid": str(app.pid)}, {}), None, context)
        await run_until_the_drain_ends(context, part, app.kill)
    finally:
        with contextlib.suppress(ProcessLookupError):
            app.kill()
        await asyncio.wait_for(app.wait(), 10)
    assert context.timeline.drain_end_source is DrainEndSource.PROCESS_EXIT


@pytest.mark.anyio
async def test_modes_connection_watch_ends_the_drain_with_connections() -> None:
    context = make_context(NO_PRESTOP_DELAY)
    listener = socket.create_server(("127.0.0.1", 0))
    try:
        port = listener.getsockname()[1]
        [part] = choose_parts(load_settings({"app_port": str(port)}, {}), None, context)
        await run_until_the_drain_ends(context, part, listener.close)
    finally:
        listener.close()
    assert context.timeline.drain_end_source is DrainEndSource.CONNECTIONS
