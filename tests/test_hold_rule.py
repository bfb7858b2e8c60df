from __future__ import annotations

import dataclasses
import math

import pytest

from sidecar.drain.arrivals import PreT0Traffic
from sidecar.hold_rule import DEFAULT_HOLD_RULE, HoldRule, choose_evidence, quiet_window, release_at

RULE = HoldRule(minimum_seconds=1.0, maximum_seconds=15.0, confidence=0.999)


@pytest.mark.parametrize(
    ("traffic", "window"),
    [
        pytest.param(PreT0Traffic(240, 120.0, 0.5), math.log(1000) / 2.0, id="poisson-at-2-per-second"),
        pytest.param(PreT0Traffic(6000, 120.0, 0.1), 1.0, id="busy-pod-gets-the-minimum"),
        pytest.param(PreT0Traffic(6000, 120.0, 4.0), 4.0, id="bursty-the-longest-lull-wins"),
        pytest.param(PreT0Traffic(2, 120.0, 100.0), 15.0, id="rare-traffic-is-capped-at-the-maximum"),
    ],
)
def test_hold_rule_window_is_the_poisson_window_or_the_longest_gap_within_bounds(
    traffic: PreT0Traffic, window: float
) -> None:
    assert quiet_window(traffic, RULE) == pytest.approx(window)


def test_hold_rule_without_arrivals_before_t0_has_no_window() -> None:
    assert quiet_window(PreT0Traffic(0, 120.0, None), RULE) is None


@pytest.mark.parametrize(
    ("span", "rule", "window"),
    [
        pytest.param(2.0, RULE, None, id="pod-started-2s-before-t0"),
        pytest.param(14.9, RULE, None, id="just-short-of-the-maximum"),
        pytest.param(15.0, RULE, math.log(1000) / 2.0, id="as-long-as-the-maximum"),
        # A maximum beyond the lookback: a whole lookback is all the history there can be.
        pytest.param(
            120.0, dataclasses.replace(RULE, maximum_seconds=200.0), math.log(1000) / 2.0, id="whole-lookback"
        ),
        pytest.param(119.0, dataclasses.replace(RULE, maximum_seconds=200.0), None, id="short-of-the-lookback"),
    ],
)
def test_hold_rule_with_less_history_than_the_maximum_has_no_window(
    span: float, rule: HoldRule, window: float | None
) -> None:
    # A young pod's burst of first connections: 2 a second, no gap longer than the span counted.
    traffic = PreT0Traffic(round(2 * span), span, 0.5)
    assert quiet_window(traffic, rule) == (None if window is None else pytest.approx(window))


def test_hold_rule_release_follows_the_last_arrival_up_to_the_maximum() -> None:
    assert release_at(100.0, 2.0, None, RULE) == 102.0  # quiet from t0
    assert release_at(100.0, 2.0, 103.5, RULE) == 105.5  # an arrival after t0 restarts the window
    assert release_at(100.0, 2.0, 114.0, RULE) == 115.0  # never past t0 + maximum
    assert release_at(100.0, None, None, RULE) == 115.0  # no window: the maximum


@pytest.mark.parametrize(
    ("rule", "words"),
    [
        pytest.param(HoldRule(5.0, 2.0, 0.999), "must not exceed", id="min-above-max"),
        pytest.param(HoldRule(1.0, 2.0, 1.0), "strictly between 0 and 1", id="confidence-one"),
        pytest.param(HoldRule(1.0, 2.0, 0.0), "strictly between 0 and 1", id="confidence-zero"),
    ],
)
def test_hold_rule_bad_bounds_are_named(rule: HoldRule, words: str) -> None:
    problem = rule.problem()
    assert problem is not None
    assert words in problem


def test_hold_rule_defaults_are_sound() -> None:
    assert DEFAULT_HOLD_RULE.problem() is None


def test_hold_rule_evidence_in_requests_mode_is_the_apps_requests_when_it_reported_any_before_t0() -> None:
    connections, requests = PreT0Traffic(3, 120.0, 40.0), PreT0Traffic(6000, 100.0, 0.2)
    assert choose_evidence("requests", connections, requests) == ("requests", requests)
    assert choose_evidence("requests", connections, PreT0Traffic(0, 100.0, None)) == ("connections", connections)
    assert choose_evidence("requests", connections, None) == ("connections", connections)  # the app reports no count


def test_hold_rule_evidence_in_connections_mode_is_the_connections_even_when_the_app_reports_requests() -> None:
    connections, requests = PreT0Traffic(3, 120.0, 40.0), PreT0Traffic(6000, 100.0, 0.2)
    assert DEFAULT_HOLD_RULE.evidence == "connections"
    assert choose_evidence("connections", connections, requests) == ("connections", connections)
    assert choose_evidence("connections", connections, None) == ("connections", connections)
