"""The drawings: positions as percentages (clamped), round ticks, a title on every shape."""

from __future__ import annotations

import re

import pytest

from sidecar.pages.lanes import DRAIN, HOLD, Lane, Mark, Segment
from sidecar.pages.svg import axis, histogram, lane_svg, pct, stacked_bars, tick_step


@pytest.mark.parametrize(("span", "step"), [(10.2, 2.0), (16.5, 2.0), (3.0, 0.5), (120.0, 20.0), (0.4, 0.05)])
def test_tick_step_is_round_and_gives_at_most_ten_ticks(span: float, step: float) -> None:
    assert tick_step(span) == pytest.approx(step)


def test_pct_clamps_to_the_drawing() -> None:
    assert (pct(5, 10), pct(-1, 10), pct(20, 10), pct(1, 0)) == ("50.000%", "0.000%", "100.000%", "0%")


def test_axis_labels_each_tick_in_seconds() -> None:
    assert re.findall(r">([\d.]+ s)<", axis(10.2, "t")) == ["0 s", "2 s", "4 s", "6 s", "8 s", "10 s"]


def test_lane_svg_gives_every_segment_mark_and_failure_a_title() -> None:
    lane = Lane(
        "pod-1",
        10.0,
        [Segment(0, 3, HOLD, "hold 3.0 s"), Segment(3, 4, DRAIN, "drain 1.0 s")],
        [Mark(3, "stop", "SIGTERM at 3.0 s"), Mark(2, "endpoint", "balancer"), Mark(9, "sigkill", "SIGKILL")],
        [(3.5, "reset")],
        True,
        "1 failed",
        "",
    )
    drawing = lane_svg(lane, 10.0)
    assert 'aria-label="pod-1: 1 failed. hold 3.0 s; drain 1.0 s"' in drawing
    titles = re.findall(r"<title>([^<]*)</title>", drawing)
    assert len(titles) == 1 + 2 + 3 + 1  # the grace period, segments, marks, a failure bucket
    assert "failed requests 3.5 s after t0: 1 reset" in titles


def test_stacked_bars_put_every_outcome_of_a_bin_in_its_title() -> None:
    drawing = stacked_bars({"ok": [5, 0], "reset": [2, 0]}, 0.5, 1.0, "requests", [(0.5, "old-1")])
    assert "<title>0 to 0.5 s: 5 ok, 2 reset</title>" in drawing
    assert ">old-1<" in drawing


def test_histogram_labels_each_bar_with_its_count() -> None:
    drawing = histogram([1.0, 1.1, 5.0], "margins")
    assert re.findall(r"<title>(\d+) pods", drawing).count("0") == 10
    assert "<title>2 pods with a margin of 1.0 to 1.3 s</title>" in drawing


def test_svg_axis_of_no_time_at_all_is_one_tick_at_zero() -> None:
    # A report with no times (no t0, no phases, no grace period) makes a lane of length 0.
    assert axis(0.0, "seconds after t0").count("<line") == 1
