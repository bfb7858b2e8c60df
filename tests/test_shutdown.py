from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time

import pytest

from sidecar.deadline import EXIT_WATCHDOG, Budget, wait_for_any
from sidecar.lifecycle import DrainEndSource, Outcome, Phase, Timeline, Trigger
from sidecar.shutdown import ShutdownSequence


def make_sequence(
    prestop: float = 0.1, grace: float = 1.0, reserve: float = 0.2
) -> tuple[ShutdownSequence, list[Phase]]:
    timeline = Timeline(Budget(grace, prestop, reserve))
    reported: list[Phase] = []

    async def report(ended: Timeline) -> None:
        reported.append(ended.phase)

    return ShutdownSequence(timeline, report=report), reported


@pytest.mark.anyio
async def test_shutdown_without_a_source_drains_until_deadline_minus_reserve() -> None:
    sequence, reported = make_sequence()
    run = asyncio.create_task(sequence.run())
    sequence.begin(Trigger.SIGNAL)
    await asyncio.wait_for(run, 2)
    timeline = sequence.timeline
    assert reported == [Phase.REPORT]
    assert timeline.phase is Phase.DONE
    assert (timeline.drain_end_source, timeline.outcome) == (DrainEndSource.DEADLINE, Outcome.UNKNOWN)
    assert timeline.drain_end == pytest.approx(timeline.drain_deadline, abs=0.01)
    assert timeline.records[Phase.DRAIN].start == pytest.approx(timeline.prestop_delay_deadline, abs=0.01)


@pytest.mark.anyio
async def test_shutdown_app_report_ends_the_drain_clean() -> None:
    sequence, _ = make_sequence(grace=10)
    run = asyncio.create_task(sequence.run())
    sequence.begin(Trigger.PRESTOP)
    await sequence.wait_prestop_delay_over()
    assert sequence.report_drain_end(DrainEndSource.APP_REPORT)
    assert not sequence.report_drain_end(DrainEndSource.CONNECTIONS), "the first source must win"
    await asyncio.wait_for(run, 2)
    assert sequence.timeline.outcome is Outcome.CLEAN
    assert sequence.timeline.margin_seconds == pytest.approx(9.9, abs=0.05)


@pytest.mark.anyio
async def test_shutdown_completion_reported_during_the_prestop_delay_makes_a_zero_length_drain() -> None:
    sequence, _ = make_sequence(prestop=0.2, grace=10)
    run = asyncio.create_task(sequence.run())
    sequence.begin(Trigger.SIGNAL)
    assert sequence.report_drain_end(DrainEndSource.APP_REPORT)
    await asyncio.wait_for(run, 2)
    drain = sequence.timeline.records[Phase.DRAIN]
    assert drain.end == drain.start


def test_shutdown_drain_end_before_t0_is_refused() -> None:
    sequence, _ = make_sequence()
    assert not sequence.report_drain_end(DrainEndSource.APP_REPORT)


@pytest.mark.anyio
async def test_shutdown_second_sigint_interrupts_but_second_sigterm_does_not() -> None:
    sequence, _ = make_sequence(prestop=5, grace=20)
    run = asyncio.create_task(sequence.run())
    sequence.on_signal(signal.SIGTERM)
    sequence.on_signal(signal.SIGTERM)
    await asyncio.sleep(0.05)
    assert not run.done()
    started = time.monotonic()
    sequence.on_signal(signal.SIGINT)
    await asyncio.wait_for(run, 1)
    assert time.monotonic() - started < 0.1
    assert sequence.timeline.drain_end_source is DrainEndSource.INTERRUPTED


@pytest.mark.anyio
async def test_shutdown_wait_for_any_returns_false_at_the_deadline_and_true_on_an_event() -> None:
    event = asyncio.Event()
    assert not await wait_for_any((event,), time.monotonic() + 0.05)
    asyncio.get_running_loop().call_later(0.01, event.set)
    assert await wait_for_any((event,), time.monotonic() + 5)


def test_shutdown_watchdog_ends_a_stuck_process_before_the_deadline() -> None:
    code = (
        "import time; from sidecar.deadline import DeadlineWatchdog\n"
        "watchdog = DeadlineWatchdog()\n"
        "watchdog.start()\n"
        "watchdog.arm(time.monotonic() + 0.3)\n"
        "watchdog.arm(time.monotonic() + 60)  # a later arm must not push the deadline out\n"
        "time.sleep(30)  # a loop that never comes back\n"
    )
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=10, check=False)
    assert result.returncode == EXIT_WATCHDOG
    assert time.monotonic() - started < 5
    assert b"watchdog" in result.stderr


@pytest.mark.anyio
async def test_shutdown_less_precise_source_is_observed_but_does_not_end_the_drain() -> None:
    timeline = Timeline(Budget(10, 0.05, 1))

    async def report(_: Timeline) -> None:
        return None

    sequence = ShutdownSequence(timeline, report=report, sources=frozenset({DrainEndSource.CONNECTIONS}))
    run = asyncio.create_task(sequence.run())
    sequence.begin(Trigger.PRESTOP)
    await sequence.wait_prestop_delay_over()
    assert not sequence.report_drain_end(DrainEndSource.APP_REPORT)
    assert timeline.phase is Phase.DRAIN
    assert sequence.report_drain_end(DrainEndSource.CONNECTIONS)
    await asyncio.wait_for(run, 2)
    assert timeline.drain_end_source is DrainEndSource.CONNECTIONS
    assert set(sequence.observed) == {DrainEndSource.APP_REPORT, DrainEndSource.CONNECTIONS}


@pytest.mark.anyio
async def test_shutdown_app_exit_before_any_shutdown_skips_the_delay_with_outcome_app_exit() -> None:
    sequence, _ = make_sequence(prestop=30, grace=60)
    run = asyncio.create_task(sequence.run())
    sequence.app_exited()
    await asyncio.wait_for(run, 1)
    timeline = sequence.timeline
    assert (timeline.trigger, timeline.outcome) == (Trigger.APP_EXIT, Outcome.APP_EXIT)
    assert timeline.drain_end_source is DrainEndSource.PROCESS_EXIT
