"""The pages as documents: self-contained, the verdict said in words, lanes and a summary where
there are many pods. (What a browser makes of them: test_browser.py.)"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from sidecar.pages.documents import read_reports
from sidecar.pages.page import SUMMARY_FROM, page_of, simulation_page

FIXTURES = Path(__file__).parent / "fixtures"


def kubectl_pods(count: int) -> dict[str, Any]:
    listing: dict[str, Any] = json.loads((FIXTURES / "pods.json").read_text())
    first = listing["items"][0]
    listing["items"] = [{**first, "metadata": {**first["metadata"], "name": f"web-{index}"}} for index in range(count)]
    return listing


def test_page_fetches_nothing_and_runs_no_script() -> None:
    text = page_of(read_reports((FIXTURES / "pods.json").read_text()))
    assert "<script" not in text
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", text)
    assert "@import" not in text
    assert "url(http" not in text


def test_page_of_few_pods_has_no_summary_and_every_lane_open() -> None:
    text = page_of(read_reports(json.dumps(kubectl_pods(3))))
    assert "<h2>Summary</h2>" not in text
    assert "<details>" not in text
    assert text.count('class="lane"') == 3


def test_page_of_many_pods_puts_a_summary_first_and_folds_clean_lanes() -> None:
    text = page_of(read_reports(json.dumps(kubectl_pods(SUMMARY_FROM + 1))))
    assert text.index("<h2>Summary</h2>") < text.index('class="lane"')
    assert "Margins:" in text
    assert f"<summary>{SUMMARY_FROM + 1} clean pods</summary>" in text
    assert text.count('class="lane"') == SUMMARY_FROM + 1


@pytest.mark.parametrize("verdict", ["pass", "fail", "inconclusive"])
def test_simulation_page_says_any_verdict_in_words(verdict: str) -> None:
    result = {
        "verdict": verdict,
        "reasons": [] if verdict == "pass" else [f"the {verdict} reason"],
        "mode": "native",
        "settings": {"grace_period_seconds": 10, "prestop_delay_seconds": 3, "propagation_delay_seconds": 2, "rps": 50},
        "duration_seconds": 1.0,
        "requests": {"sent": 0, "failed": 0, "by_kind": {}, "by_phase": {}},
        "pods": [],
    }
    text = simulation_page(result)
    heading = re.search(r'<h1 id="verdict" class="(\w+)">([^<]*)</h1>', text)
    assert heading is not None
    assert heading.group(1) == verdict
    assert verdict.upper() in heading.group(2)
    if verdict == "fail":
        assert f"the {verdict} reason" in heading.group(2)
    if verdict == "inconclusive":
        assert "too late to judge" in heading.group(2)
        assert "<li>the inconclusive reason</li>" in text


def test_page_of_real_pods_gives_each_shutdown_its_clock_time_and_else_seconds_after_t0() -> None:
    reports = read_reports((FIXTURES / "pods.json").read_text())
    t0 = reports.pods[0].report["t0"]
    text = page_of(reports)
    assert "t0 2026-12-04 18:17:40 UTC" in text
    assert str(int(t0)) not in text  # no Unix time anywhere


def test_page_flags_a_clean_pod_whose_late_connection_came_after_the_hold() -> None:
    listing = kubectl_pods(1)
    status = listing["items"][0]["status"]["initContainerStatuses"][0]["state"]["terminated"]
    report = json.loads(status["message"])
    status["message"] = json.dumps({**report, "late_connections": 4, "last_late_connection_seconds": 3.5})
    text = page_of(read_reports(json.dumps(listing)))
    assert "\u2718 late connections after the hold" in text
    assert 'class="fail"' in text


def test_page_of_a_report_cut_to_its_last_keys_draws_its_grace_period_from_t0_and_deadline() -> None:
    # The termination log's last fallback at 4096 bytes: no phases, no grace_period_seconds.
    cut = {
        "outcome": "clean",
        "trigger": "prestop",
        "drain_end_source": "process_exit",
        "margin_seconds": 3.1,
        "t0": 1_800_000_000.0,
        "deadline": 1_800_000_030.0,
        "truncated": True,
    }
    text = page_of(read_reports(json.dumps(cut)))
    assert text.count('class="lane"') == 1
    assert ">30 s</text>" in text  # the axis reaches the 30 s grace period
