from __future__ import annotations

import asyncio
import signal

import pytest

from sidecar.deadline import Budget
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
    # Timers never fire early; on a loaded machine they may fire late, so only the order and a
    # generous bound are checked (the drain-accuracy figures are in tests/benchmarks/).
    drain_start = timeline.records[Phase.DRAIN].start
    assert timeline.prestop_delay_deadline <= drain_start < timeline.prestop_delay_deadline + 0.5
    assert timeline.drain_end is not None
    assert timeline.drain_deadline <= timeline.drain_end < timeline.drain_deadline + 0.5


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
    # Had the second SIGTERM interrupted, these loop turns would carry the sequence to done.
    for _ in range(20):
        await asyncio.sleep(0)
    assert sequence.timeline.phase is Phase.PRESTOP_DELAY
    sequence.on_signal(signal.SIGINT)
    await asyncio.wait_for(run, 2)
    timeline = sequence.timeline
    assert timeline.drain_end_source is DrainEndSource.INTERRUPTED
    assert timeline.drain_end is not None
    assert timeline.drain_end < timeline.prestop_delay_deadline


@pytest.mark.anyio
async def test_shutdown_sigint_after_prestop_is_the_kubelets_stop_signal_and_interrupts_nothing() -> None:
    sequence, _ = make_sequence(prestop=0.1, grace=10)
    run = asyncio.create_task(sequence.run())
    sequence.begin(Trigger.PRESTOP)
    sequence.on_signal(signal.SIGINT)
    await sequence.wait_prestop_delay_over()
    sequence.on_signal(signal.SIGINT)
    assert sequence.report_drain_end(DrainEndSource.APP_REPORT)
    await asyncio.wait_for(run, 2)
    timeline = sequence.timeline
    assert (timeline.drain_end_source, timeline.outcome) == (DrainEndSource.APP_REPORT, Outcome.CLEAN)
    assert timeline.records[Phase.DRAIN].start >= timeline.prestop_delay_deadline, "the delay was cut short"


@pytest.mark.anyio
async def test_shutdown_less_precise_source_is_observed_but_does_not_end_the_drain() -> None:
    timeline = Timeline(Budget(10, 0.05, 1))

    async def report(_: Timeline) -> None:
        return None

    sources = frozenset({DrainEndSource.PROCESS_EXIT, DrainEndSource.CONNECTIONS})
    sequence = ShutdownSequence(timeline, report=report, sources=sources)
    run = asyncio.create_task(sequence.run())
    sequence.begin(Trigger.PRESTOP)
    await sequence.wait_prestop_delay_over()
    assert not sequence.report_drain_end(DrainEndSource.CONNECTIONS)
    assert timeline.phase is Phase.DRAIN
    assert sequence.report_drain_end(DrainEndSource.PROCESS_EXIT)
    await asyncio.wait_for(run, 2)
    assert (timeline.drain_end_source, timeline.outcome) == (DrainEndSource.PROCESS_EXIT, Outcome.CLEAN)
    assert set(sequence.observed) == {DrainEndSource.PROCESS_EXIT, DrainEndSource.CONNECTIONS}


def port_watching_sequence(grace: float = 10) -> ShutdownSequence:
    """serve with --app-port only: a classic sidecar that cannot see the app's process."""
    sequence, _ = make_sequence(prestop=0.05, grace=grace, reserve=0.5)
    sequence.sources = frozenset({DrainEndSource.CONNECTIONS})
    return sequence


@pytest.mark.anyio
async def test_shutdown_listener_closed_alone_ends_the_drain_but_is_not_clean() -> None:
    sequence = port_watching_sequence()
    run = asyncio.create_task(sequence.run())
    sequence.begin(Trigger.PRESTOP)
    await sequence.wait_prestop_delay_over()
    assert sequence.report_drain_end(DrainEndSource.CONNECTIONS)
    await asyncio.wait_for(run, 2)
    timeline = sequence.timeline
    assert (timeline.drain_end_source, timeline.outcome) == (DrainEndSource.CONNECTIONS, Outcome.UNKNOWN)
    assert timeline.margin_seconds is None
    assert timeline.outcome_reason is not None
    assert "nothing saw the app finish" in timeline.outcome_reason


@pytest.mark.anyio
async def test_shutdown_a_reporting_app_is_awaited_past_its_listener_closing() -> None:
    sequence = port_watching_sequence()
    sequence.app_reporting()  # the app said something on POST /drain: it will say complete
    run = asyncio.create_task(sequence.run())
    sequence.begin(Trigger.PRESTOP)
    await sequence.wait_prestop_delay_over()
    assert not sequence.report_drain_end(DrainEndSource.CONNECTIONS)
    assert sequence.timeline.phase is Phase.DRAIN
    assert sequence.report_drain_end(DrainEndSource.APP_REPORT)
    await asyncio.wait_for(run, 2)
    timeline = sequence.timeline
    assert (timeline.drain_end_source, timeline.outcome) == (DrainEndSource.APP_REPORT, Outcome.CLEAN)
    assert set(sequence.observed) == {DrainEndSource.CONNECTIONS, DrainEndSource.APP_REPORT}


@pytest.mark.anyio
async def test_shutdown_a_reporting_app_that_never_says_complete_times_out() -> None:
    sequence = port_watching_sequence(grace=1.0)
    sequence.app_reporting()
    run = asyncio.create_task(sequence.run())
    sequence.begin(Trigger.PRESTOP)
    await sequence.wait_prestop_delay_over()
    sequence.report_drain_end(DrainEndSource.CONNECTIONS)  # its listener closed; its lifespan still runs
    await asyncio.wait_for(run, 3)
    timeline = sequence.timeline
    assert (timeline.drain_end_source, timeline.outcome) == (DrainEndSource.DEADLINE, Outcome.TIMEOUT)
    assert timeline.outcome_reason is not None
    assert "not reported complete" in timeline.outcome_reason


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("prestop_first", "outcome"),
    [
        pytest.param(True, Outcome.CLEAN, id="after-prestop-clean"),
        # Its SIGTERM began the shutdown: when the app was told to stop, against the deadline, is unknown.
        pytest.param(False, Outcome.UNKNOWN, id="sigterm-first-unknown"),
    ],
)
async def test_shutdown_native_sigterm_is_clean_only_when_the_shutdown_began_before_it(
    prestop_first: bool, outcome: Outcome
) -> None:
    sequence, _ = make_sequence(prestop=5, grace=30)
    sequence.sources = frozenset({DrainEndSource.SIDECAR_SIGTERM})
    run = asyncio.create_task(sequence.run())
    if prestop_first:
        sequence.begin(Trigger.PRESTOP)
    sequence.finish_now(DrainEndSource.SIDECAR_SIGTERM)
    await asyncio.wait_for(run, 2)
    timeline = sequence.timeline
    assert (timeline.drain_end_source, timeline.outcome) == (DrainEndSource.SIDECAR_SIGTERM, outcome)
    assert (timeline.margin_seconds is None) is (outcome is Outcome.UNKNOWN)


@pytest.mark.anyio
async def test_shutdown_app_exit_before_any_shutdown_skips_the_delay_with_outcome_app_exit() -> None:
    sequence, _ = make_sequence(prestop=30, grace=60)
    run = asyncio.create_task(sequence.run())
    sequence.app_exited()
    await asyncio.wait_for(run, 1)
    timeline = sequence.timeline
    assert (timeline.trigger, timeline.outcome) == (Trigger.APP_EXIT, Outcome.APP_EXIT)
    assert timeline.drain_end_source is DrainEndSource.PROCESS_EXIT


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("triggers", "run_mode", "outcome"),
    [
        # The wrapper sends the stop signal only when the hold ends: an exit during it was untold.
        pytest.param([Trigger.SIGNAL], True, Outcome.APP_EXIT, id="run-mode"),
        # A /prestop call (the app's preStop hook) holds the watched app's stop signal.
        pytest.param([Trigger.PRESTOP], False, Outcome.APP_EXIT, id="watched-prestop"),
        pytest.param([Trigger.SIGNAL, Trigger.PRESTOP], False, Outcome.APP_EXIT, id="watched-sigterm-then-prestop"),
        # No /prestop call: the kubelet may have signalled the app at t0 (no preStop hook), a drain.
        pytest.param([Trigger.SIGNAL], False, Outcome.CLEAN, id="watched-no-prestop"),
    ],
)
async def test_shutdown_app_exit_during_the_hold_before_its_stop_signal_is_app_exit(
    triggers: list[Trigger], run_mode: bool, outcome: Outcome
) -> None:
    sequence, _ = make_sequence(prestop=0.3, grace=10)
    run = asyncio.create_task(sequence.run())
    for trigger in triggers:
        sequence.begin(trigger)
    app_exited = sequence.app_exited if run_mode else sequence.watched_process_exited
    app_exited()
    await asyncio.wait_for(run, 2)
    timeline = sequence.timeline
    assert (timeline.trigger, timeline.outcome) == (triggers[0], outcome)
    assert timeline.records[Phase.PRESTOP_DELAY].duration_seconds(0) >= 0.3, "the hold goes on"
    assert timeline.drained is (outcome is Outcome.CLEAN)
    assert (timeline.margin_seconds is None) is (outcome is Outcome.APP_EXIT)
    if outcome is Outcome.APP_EXIT:
        assert timeline.outcome_reason is not None
        assert "during the prestop hold, before its stop signal" in timeline.outcome_reason


@pytest.mark.anyio
@pytest.mark.parametrize("run_mode", [True, False])
async def test_shutdown_app_exit_after_the_hold_is_its_drain_ending_clean(run_mode: bool) -> None:
    sequence, _ = make_sequence(prestop=0.05, grace=10)
    run = asyncio.create_task(sequence.run())
    sequence.begin(Trigger.PRESTOP)
    await sequence.wait_prestop_delay_over()
    app_exited = sequence.app_exited if run_mode else sequence.watched_process_exited
    app_exited()
    await asyncio.wait_for(run, 2)
    assert (sequence.timeline.outcome, sequence.timeline.drained) == (Outcome.CLEAN, True)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("reported", "ends_it", "outcome"),
    [
        # --watch-process matched nothing: the listener's earlier event, held back by it, decides now.
        pytest.param([DrainEndSource.CONNECTIONS], DrainEndSource.CONNECTIONS, Outcome.UNKNOWN, id="outranked"),
        # The listener closed first, then the app said complete without having reported before (an
        # AppReport without on_report, as create_app's default): both were held back by the process
        # watch. Once it cannot watch, precedence decides, not which was seen first.
        pytest.param(
            [DrainEndSource.CONNECTIONS, DrainEndSource.APP_REPORT],
            DrainEndSource.APP_REPORT,
            Outcome.CLEAN,
            id="most-precise-not-first",
        ),
    ],
)
async def test_shutdown_a_source_that_cannot_watch_lets_the_most_precise_observed_event_end_the_drain(
    reported: list[DrainEndSource], ends_it: DrainEndSource, outcome: Outcome
) -> None:
    sequence = port_watching_sequence()
    sequence.sources = frozenset({DrainEndSource.PROCESS_EXIT, DrainEndSource.CONNECTIONS})
    run = asyncio.create_task(sequence.run())
    sequence.begin(Trigger.PRESTOP)
    await sequence.wait_prestop_delay_over()
    for source in reported:
        assert not sequence.report_drain_end(source)
    sequence.source_unavailable(DrainEndSource.PROCESS_EXIT)
    await asyncio.wait_for(run, 2)
    timeline = sequence.timeline
    assert (timeline.drain_end_source, timeline.outcome) == (ends_it, outcome)
    assert timeline.drain_end == sequence.observed[ends_it]
