from __future__ import annotations

import pytest

from sidecar.deadline import Budget
from sidecar.lifecycle import (
    NEXT_PHASE,
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


PROCESS = frozenset({DrainEndSource.PROCESS_EXIT})
NATIVE = frozenset({DrainEndSource.SIDECAR_SIGTERM, DrainEndSource.CONNECTIONS})
PORT = frozenset({DrainEndSource.CONNECTIONS})
PORT_AND_REPORT = frozenset({DrainEndSource.CONNECTIONS, DrainEndSource.APP_REPORT})
NOTHING: frozenset[DrainEndSource] = frozenset()


@pytest.mark.parametrize(
    ("source", "watching", "outcome", "reason"),
    [
        pytest.param(DrainEndSource.APP_REPORT, PORT_AND_REPORT, Outcome.CLEAN, "reported complete", id="app-report"),
        pytest.param(DrainEndSource.PROCESS_EXIT, PROCESS, Outcome.CLEAN, "process exited", id="process-exit"),
        pytest.param(DrainEndSource.SIDECAR_SIGTERM, NATIVE, Outcome.CLEAN, "every app container", id="native"),
        # A listener that closed is not an app that finished: never clean.
        pytest.param(DrainEndSource.CONNECTIONS, PORT, Outcome.UNKNOWN, "nothing saw the app finish", id="listener"),
        pytest.param(DrainEndSource.DEADLINE, PROCESS, Outcome.TIMEOUT, "still running", id="process-still-running"),
        pytest.param(DrainEndSource.DEADLINE, PORT_AND_REPORT, Outcome.TIMEOUT, "not reported complete",
                     id="app-said-nothing-by-the-deadline"),
        pytest.param(DrainEndSource.DEADLINE, PORT, Outcome.TIMEOUT, "still had its listener", id="port-still-open"),
        pytest.param(DrainEndSource.DEADLINE, NOTHING, Outcome.UNKNOWN, "nothing watched", id="nothing-watched"),
        pytest.param(DrainEndSource.INTERRUPTED, PROCESS, Outcome.UNKNOWN, "second SIGINT", id="interrupted"),
    ],
)  # fmt: skip
def test_lifecycle_outcome_follows_the_drain_end_source_and_says_why(
    source: DrainEndSource, watching: frozenset[DrainEndSource], outcome: Outcome, reason: str
) -> None:
    decided, why = decide_outcome(source, watching=watching)
    assert decided is outcome
    assert reason in why


def test_lifecycle_native_sigterm_that_began_the_shutdown_is_not_clean() -> None:
    # No /prestop before it: t0 was the app's end, and its drain against the deadline was not seen.
    outcome, reason = decide_outcome(DrainEndSource.SIDECAR_SIGTERM, watching=NATIVE, start_seen=False)
    assert outcome is Outcome.UNKNOWN
    assert "no /prestop call" in reason


@pytest.mark.parametrize(
    ("source", "configured", "ends"),
    [
        pytest.param(DrainEndSource.APP_REPORT, frozenset(), True, id="app-report-alone"),
        pytest.param(DrainEndSource.APP_REPORT, frozenset({DrainEndSource.CONNECTIONS}), True, id="above-connections"),
        pytest.param(DrainEndSource.CONNECTIONS, PORT_AND_REPORT, False, id="connections-below-a-reporting-app"),
        pytest.param(DrainEndSource.APP_REPORT, PROCESS | PORT_AND_REPORT, False, id="report-below-process"),
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
    outcome, _ = decide_outcome(DrainEndSource.PROCESS_EXIT, watching=PROCESS, app_exit="it crashed")
    assert outcome is Outcome.APP_EXIT
