from __future__ import annotations

import pytest

from sidecar.lifecycle import (
    NEXT_PHASE,
    Budget,
    DrainEndSource,
    IllegalTransition,
    Outcome,
    Phase,
    Timeline,
    Trigger,
    decide_outcome,
    outranks,
)

BUDGET = Budget(grace_period_seconds=30, prestop_delay_seconds=5, report_reserve_seconds=1)


def make_timeline() -> Timeline:
    return Timeline(BUDGET, wall_clock=lambda: 1_000_000.0)


def test_lifecycle_phases_follow_one_line_to_done() -> None:
    phase, seen = Phase.RUNNING, [Phase.RUNNING]
    while phase in NEXT_PHASE:
        phase = NEXT_PHASE[phase]
        seen.append(phase)
    assert seen == list(Phase)


@pytest.mark.parametrize(
    ("start", "to"),
    [
        pytest.param(Phase.RUNNING, Phase.DRAIN, id="skip-prestop-delay"),
        pytest.param(Phase.PRESTOP_DELAY, Phase.RUNNING, id="back-to-running"),
        pytest.param(Phase.PRESTOP_DELAY, Phase.REPORT, id="skip-drain"),
        pytest.param(Phase.PRESTOP_DELAY, Phase.PRESTOP_DELAY, id="same-phase"),
    ],
)
def test_lifecycle_illegal_transition_raises_and_changes_nothing(start: Phase, to: Phase) -> None:
    timeline = make_timeline()
    if start is Phase.PRESTOP_DELAY:
        timeline.begin(Trigger.SIGNAL, now=10)
    with pytest.raises(IllegalTransition):
        timeline.advance(to, now=11)
    assert timeline.phase is start


def test_lifecycle_begin_is_idempotent_and_keeps_the_first_t0() -> None:
    timeline = make_timeline()
    assert timeline.begin(Trigger.PRESTOP, now=10)
    assert not timeline.begin(Trigger.SIGNAL, now=12)
    assert (timeline.t0, timeline.trigger) == (10, Trigger.PRESTOP)
    assert timeline.deadline == 40
    assert timeline.prestop_delay_deadline == 15
    assert timeline.drain_deadline == 39


def test_lifecycle_records_each_phase_and_the_measured_margin() -> None:
    timeline = make_timeline()
    timeline.begin(Trigger.SIGNAL, now=10)
    timeline.advance(Phase.DRAIN, now=15)
    timeline.end_drain(DrainEndSource.APP_REPORT, Outcome.CLEAN, now=22)
    timeline.advance(Phase.DONE, now=22.5)
    records = {phase: (r.start, r.end) for phase, r in timeline.records.items()}
    assert records == {Phase.PRESTOP_DELAY: (10, 15), Phase.DRAIN: (15, 22), Phase.REPORT: (22, 22.5)}
    assert timeline.margin_seconds == 18
    assert timeline.to_wall(15) - timeline.to_wall(10) == 5


def test_lifecycle_margin_is_unknown_when_nothing_measured_the_drain() -> None:
    timeline = make_timeline()
    timeline.begin(Trigger.SIGNAL, now=0)
    timeline.advance(Phase.DRAIN, now=5)
    timeline.end_drain(DrainEndSource.DEADLINE, Outcome.UNKNOWN, now=29)
    assert timeline.margin_seconds is None


def test_lifecycle_times_before_t0_raise() -> None:
    with pytest.raises(IllegalTransition):
        _ = make_timeline().deadline


def test_lifecycle_drain_cannot_end_outside_the_drain_phase() -> None:
    timeline = make_timeline()
    timeline.begin(Trigger.SIGNAL, now=0)
    with pytest.raises(IllegalTransition):
        timeline.end_drain(DrainEndSource.APP_REPORT, Outcome.CLEAN, now=1)


def test_lifecycle_listeners_hear_every_change_in_order() -> None:
    timeline = make_timeline()
    heard: list[tuple[Phase, Phase]] = []
    timeline.add_listener(lambda previous, current, _: heard.append((previous, current)))
    timeline.begin(Trigger.SIGNAL, now=0)
    timeline.advance(Phase.DRAIN, now=5)
    assert heard == [(Phase.RUNNING, Phase.PRESTOP_DELAY), (Phase.PRESTOP_DELAY, Phase.DRAIN)]


@pytest.mark.parametrize(
    ("source", "watched", "outcome"),
    [
        pytest.param(DrainEndSource.APP_REPORT, False, Outcome.CLEAN, id="app-report"),
        pytest.param(DrainEndSource.PROCESS_EXIT, True, Outcome.CLEAN, id="process-exit"),
        pytest.param(DrainEndSource.DEADLINE, True, Outcome.TIMEOUT, id="watched-still-running"),
        pytest.param(DrainEndSource.DEADLINE, False, Outcome.UNKNOWN, id="nothing-watched"),
        pytest.param(DrainEndSource.INTERRUPTED, True, Outcome.UNKNOWN, id="interrupted"),
    ],
)
def test_lifecycle_outcome_follows_the_drain_end_source(
    source: DrainEndSource, watched: bool, outcome: Outcome
) -> None:
    assert decide_outcome(source, app_watched=watched) is outcome


@pytest.mark.parametrize(
    ("source", "configured", "ends"),
    [
        pytest.param(DrainEndSource.APP_REPORT, frozenset(), True, id="app-report-alone"),
        pytest.param(DrainEndSource.APP_REPORT, frozenset({DrainEndSource.CONNECTIONS}), False, id="below-connections"),
        pytest.param(DrainEndSource.CONNECTIONS, frozenset({DrainEndSource.PROCESS_EXIT}), False, id="below-process"),
        pytest.param(DrainEndSource.PROCESS_EXIT, frozenset({DrainEndSource.CONNECTIONS}), True, id="process-first"),
        pytest.param(DrainEndSource.SIDECAR_SIGTERM, frozenset({DrainEndSource.PROCESS_EXIT}), True, id="sigterm"),
        pytest.param(
            DrainEndSource.CONNECTIONS,
            frozenset({DrainEndSource.SIDECAR_SIGTERM, DrainEndSource.CONNECTIONS}),
            False,
            id="connections-below-native-sigterm",
        ),
    ],
)
def test_lifecycle_drain_source_precedence(
    source: DrainEndSource, configured: frozenset[DrainEndSource], ends: bool
) -> None:
    assert outranks(source, configured) is ends


def test_lifecycle_app_exit_before_shutdown_is_its_own_outcome() -> None:
    outcome = decide_outcome(DrainEndSource.PROCESS_EXIT, app_watched=True, app_exited_first=True)
    assert outcome is Outcome.APP_EXIT
