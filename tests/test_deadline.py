from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time

import pytest

from sidecar.deadline import (
    EXIT_WATCHDOG,
    MINIMUM_CALL_TIMEOUT_SECONDS,
    WATCHDOG_LEAD_SECONDS,
    Budget,
    call_timeout,
    seconds_left,
    wait_for_any,
)


@pytest.mark.parametrize(
    ("budget", "fits"),
    [
        pytest.param(Budget(30, 5, 1), True, id="fits"),
        pytest.param(Budget(6.5, 4.5, 2), False, id="equal"),
        pytest.param(Budget(5, 4.5, 2), False, id="over"),
    ],
)
def test_budget_problem_only_when_prestop_delay_and_reserve_leave_nothing_to_drain(budget: Budget, fits: bool) -> None:
    problem = budget.problem()
    if fits:
        assert problem is None
    else:
        assert problem is not None
        assert "prestop delay (4.5s)" in problem
        assert "report reserve (2s)" in problem
        assert f"grace period ({budget.grace_period_seconds:g}s)" in problem


def test_budget_deadlines_are_measured_from_t0() -> None:
    budget = Budget(30, 5, 1.5)
    assert budget.deadline(100.0) == 130.0
    assert budget.prestop_delay_deadline(100.0) == 105.0
    assert budget.drain_deadline(100.0) == 128.5


def test_seconds_left_counts_down_to_the_deadline_and_never_below_the_floor() -> None:
    now = time.monotonic()
    assert 90 < seconds_left(now + 100) <= 100
    assert seconds_left(now - 10) == 0.0
    assert seconds_left(now - 10, floor=2.5) == 2.5
    assert seconds_left(now + 100, floor=2.5) > 90


def test_call_timeout_is_never_below_the_minimum_even_past_the_deadline() -> None:
    now = time.monotonic()
    assert call_timeout(now - 10) == MINIMUM_CALL_TIMEOUT_SECONDS
    assert call_timeout(now) == MINIMUM_CALL_TIMEOUT_SECONDS
    assert 90 < call_timeout(now + 100) <= 100


@pytest.mark.anyio
async def test_wait_for_any_returns_false_at_the_deadline() -> None:
    deadline = time.monotonic() + 0.05
    assert not await wait_for_any((asyncio.Event(), asyncio.Event()), deadline)
    # The loop may fire a timer up to its clock resolution early; never by more.
    assert time.monotonic() >= deadline - 0.01


@pytest.mark.anyio
async def test_wait_for_any_returns_true_when_an_event_is_set_later() -> None:
    first, second = asyncio.Event(), asyncio.Event()
    asyncio.get_running_loop().call_later(0.01, second.set)
    assert await wait_for_any((first, second), time.monotonic() + 30)
    assert second.is_set()


@pytest.mark.anyio
async def test_wait_for_any_returns_true_at_once_when_an_event_is_already_set() -> None:
    event = asyncio.Event()
    event.set()
    # A deadline already passed: only an event that is set can make it answer True.
    assert await wait_for_any((asyncio.Event(), event), time.monotonic() - 1)
    # At once: it finishes on its first step, without waiting for a turn of the loop.
    with pytest.raises(StopIteration) as finished:
        wait_for_any((event,), time.monotonic() + 30).send(None)
    assert finished.value.value is True


@pytest.mark.parametrize("event_wins", [pytest.param(True, id="event"), pytest.param(False, id="deadline")])
@pytest.mark.anyio
async def test_wait_for_any_cancels_its_waiters(event_wins: bool) -> None:
    before = asyncio.all_tasks()
    winner, loser = asyncio.Event(), asyncio.Event()
    if event_wins:
        asyncio.get_running_loop().call_later(0.01, winner.set)
    assert await wait_for_any((winner, loser), time.monotonic() + (30 if event_wins else 0.05)) is event_wins
    for _ in range(3):  # a cancelled task finishes on its next turn of the loop
        await asyncio.sleep(0)
    assert asyncio.all_tasks() - before == set(), "a waiter outlived wait_for_any"


def run_watchdog_child(arm_after_seconds: float) -> tuple[subprocess.CompletedProcess[bytes], float]:
    code = (
        "import time\n"
        "from sidecar.deadline import DeadlineWatchdog\n"
        "watchdog = DeadlineWatchdog()\n"
        "watchdog.start()\n"
        f"watchdog.arm(time.monotonic() + {arm_after_seconds})\n"
        "watchdog.arm(time.monotonic() + 60)  # a second arm must not push the deadline out\n"
        "time.sleep(60)  # an event loop that never comes back\n"
    )
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=30, check=False)
    return result, time.monotonic() - started


def test_deadline_watchdog_ends_a_stuck_process_at_its_first_deadline_with_a_line_on_stderr() -> None:
    result, elapsed = run_watchdog_child(0.5)
    assert result.returncode == EXIT_WATCHDOG
    # Not before the deadline (armed after the child started, so the parent's clock ran longer) ...
    assert elapsed >= 0.5 - WATCHDOG_LEAD_SECONDS
    # ... and long before the second arm's 60 s or the child's own 60 s sleep.
    assert elapsed < 20
    line = json.loads(result.stderr.decode().strip().splitlines()[-1])
    assert line == {"level": "error", "msg": "watchdog: event loop did not finish before the deadline"}
