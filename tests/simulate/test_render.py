"""The rehearsal as text, from result documents that verdict.result_document built out of hand-made
kubelet records and command.settings_document built out of real options: the render cannot drift
from the document shape without these tests noticing."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sidecar.cli import build_parser
from sidecar.simulate.client import Failure, Result
from sidecar.simulate.command import Rehearsed, settings_document
from sidecar.simulate.load import KINDS, NO_ENDPOINTS, PHASES, Tally, load_document
from sidecar.simulate.options import options_from_args
from sidecar.simulate.podspec import Mode, template_for_mode
from sidecar.simulate.records import PodRecord
from sidecar.simulate.render import (
    BAR_WIDTH,
    LEGEND,
    advice,
    column,
    endpoint_marker,
    render,
    requests_table,
    timeline_bar,
    verdict_lines,
)
from sidecar.simulate.verdict import Document, pod_document, result_document
from tests.simulate.pod_records import APP, SIDECAR, container, native_pod, none_pod, pod, run_pod, tally


def result(
    records: list[PodRecord], counted: Tally, *flags: str, mode: Mode | None = None, duration: float = 12.0
) -> Document:
    """What simulate would print for these records, with the settings `simulate FLAGS` gives."""
    options = options_from_args(build_parser().parse_args(["simulate", *flags]))
    template = template_for_mode(mode or options.mode, options.budget, options.app_command)
    load = load_document(options.client, options.balancer, options.connections, counted)
    settings = settings_document(options, Rehearsed(template, options.pods, options.strategy))
    return result_document(template.mode, settings, counted, records, duration, load=load)


@pytest.mark.parametrize(
    ("seconds", "grace", "expected"),
    [
        pytest.param(0.0, 10.0, 0, id="start"),
        pytest.param(-1.0, 10.0, 0, id="before-the-deletion-clamped"),
        pytest.param(0.19, 10.0, 0, id="inside-the-first-column"),
        pytest.param(0.2, 10.0, 1, id="second-column"),
        pytest.param(5.0, 10.0, 25, id="half-way"),
        pytest.param(9.99, 10.0, BAR_WIDTH - 1, id="last-column"),
        pytest.param(10.0, 10.0, BAR_WIDTH - 1, id="the-grace-period-clamped"),
        pytest.param(30.0, 10.0, BAR_WIDTH - 1, id="past-the-grace-period-clamped"),
        pytest.param(15.0, 30.0, 25, id="other-grace"),
    ],
)
def test_column_scales_to_the_grace_period_and_clamps(seconds: float, grace: float, expected: int) -> None:
    assert column(seconds, grace) == expected


def bar_of(record: PodRecord) -> str:
    return timeline_bar(pod_document(record))


@pytest.mark.parametrize(
    ("record", "bar"),
    [
        pytest.param(
            native_pod(hook_end=3.0, app_exit=4.5, sidecar_exit=5.0),
            "=" * 15 + "#" * 7 + "+" * 3 + "." * 25,
            id="native",
        ),
        pytest.param(run_pod(hook_end=3.0, app_exit=4.5), "=" * 15 + "#" * 7 + "." * 28, id="run-no-separate-sidecar"),
        pytest.param(none_pod(app_exit=2.0), "#" * 10 + "." * 40, id="none-no-hook"),
        pytest.param(
            native_pod(hook_end=0.001, app_exit=0.002, sidecar_exit=0.003),
            "=#+" + "." * 47,
            id="tiny-segments-one-column-each",
        ),
        pytest.param(none_pod(app_exit=10.01, killed=10.0), "#" * 49 + "X", id="sigkill-at-the-end"),
        pytest.param(
            native_pod(hook_end=3.0, app_exit=10.01, app_killed=10.0, sidecar_exit=10.5),
            "=" * 15 + "#" * 34 + "X",
            id="drain-overran-then-sigkill",
        ),
        pytest.param(
            pod("pod-1", [container(APP, sigterm=0.0, exited=5.02, killed=5.0)], reporter=None, grace=10.0),
            "#" * 25 + "X" + "." * 24,
            id="sigkill-mid-bar",
        ),
    ],
)
def test_timeline_bar_draws_hook_drain_sidecar_and_sigkill(record: PodRecord, bar: str) -> None:
    drawn = bar_of(record)
    assert len(drawn) == BAR_WIDTH
    assert drawn == bar


def test_timeline_bar_leaves_out_a_sidecar_that_exited_before_the_app() -> None:
    # Classic mode: the sidecar is a regular container and may well exit first.
    record = pod(
        "pod-1",
        [
            container(APP, hook=(0.0, 3.0), sigterm=3.0, exited=4.5),
            container(SIDECAR, sigterm=0.0, exited=4.0),
        ],
    )
    assert bar_of(record) == "=" * 15 + "#" * 7 + "." * 28


def test_timeline_bar_keeps_every_segment_when_the_hook_used_the_whole_grace_period() -> None:
    # The hook timed out at the deadline; the app then drained 0.1 s in the kubelet's 2 s extra
    # and the native sidecar stopped after it.
    bar = bar_of(native_pod(hook_end=10.0, app_exit=10.1, sidecar_exit=10.5))
    assert len(bar) == BAR_WIDTH
    assert {"=", "#", "+"} <= set(bar)


def test_timeline_bar_shows_no_grace_left_for_a_pod_that_ended_after_it() -> None:
    # Run mode: the hook returned at 9 s, the app drained to 10.5 s (inside the 2 s extra).
    document = pod_document(run_pod(hook_end=9.0, app_exit=10.5))
    assert document["within_grace"] is False
    assert not timeline_bar(document).endswith(".")


@pytest.mark.parametrize(
    ("removed", "marker"),
    [
        pytest.param(0.0, "^ 0.00s", id="at-once"),
        pytest.param(2.0, " " * 10 + "^ 2.00s", id="under-its-column"),
        pytest.param(12.5, " " * 49 + "^ 12.50s", id="past-the-grace-period-clamped"),
        pytest.param(None, "(the balancer never stopped routing to it)", id="never"),
    ],
)
def test_endpoint_marker_points_at_the_removal(removed: float | None, marker: str) -> None:
    assert endpoint_marker(pod_document(native_pod(endpoint_removed=removed))) == marker


def rows_of(lines: list[str]) -> dict[str, list[int]]:
    """requests_table's phase rows: phase -> [sent, failed, *by kind in KINDS order]."""
    return {line.split()[0]: [int(n) for n in line.split()[1:]] for line in lines[2:]}


def test_requests_table_has_a_row_per_phase_and_a_column_per_kind() -> None:
    counted = tally(ok=20, drain=[Failure.RESET, Failure.RESET, Failure.REFUSED], exited=[Failure.SERVER_ERROR])
    lines = requests_table(counted.document())
    assert lines[0] == "requests: 24 sent, 4 failed"
    assert lines[1].split() == ["phase", "sent", "failed", *KINDS]
    kind = {name: 2 + i for i, name in enumerate(KINDS)}
    rows = rows_of(lines)
    assert list(rows) == [phase for phase in PHASES if phase != NO_ENDPOINTS]
    assert rows["running"][:2] == [20, 0]
    assert rows["drain"][:2] == [3, 3]
    assert (rows["drain"][kind["reset"]], rows["drain"][kind["refused"]]) == (2, 1)
    assert rows["exited"][kind["5xx"]] == 1
    assert rows["prestop"] == [0] * (2 + len(KINDS))


def test_requests_table_shows_no_endpoints_only_when_some_were_refused_so() -> None:
    assert NO_ENDPOINTS not in rows_of(requests_table(tally(ok=3).document()))
    rows = rows_of(requests_table(tally(ok=3, no_endpoints=[Failure.REFUSED] * 2).document()))
    assert rows[NO_ENDPOINTS][:2] == [2, 2]


def test_verdict_lines_pass_suggests_the_baseline() -> None:
    lines = verdict_lines(result([native_pod()], tally(ok=10)))
    assert lines[0].startswith("verdict: PASS")
    assert lines[1:] == ["  the same rollout without the sidecar: add --mode none"]


def test_verdict_lines_pass_of_the_baseline_suggests_nothing() -> None:
    lines = verdict_lines(result([none_pod()], tally(ok=10), "--mode", "none"))
    assert len(lines) == 1
    assert lines[0].startswith("verdict: PASS")


def test_verdict_lines_fail_lists_each_reason_and_the_hint() -> None:
    document = result([native_pod(app_exit=10.01, app_killed=10.0, sidecar_exit=10.5)], tally(ok=10))
    lines = verdict_lines(document)
    assert lines[0] == "verdict: FAIL"
    assert lines[1 : 1 + len(document["reasons"])] == [f"  - {reason}" for reason in document["reasons"]]
    assert lines[-1] == f"  hint: {advice(document)}"
    assert len(lines) == 2 + len(document["reasons"])


def test_verdict_lines_fail_without_a_hint_has_no_hint_line() -> None:
    document = result([native_pod(report=None)], tally(ok=10))
    assert advice(document) is None
    assert verdict_lines(document) == ["verdict: FAIL", "  - pod-1: no final report from shutdown-sidecar"]


@pytest.mark.parametrize(
    ("document", "hint"),
    [
        pytest.param(
            result([none_pod()], tally(ok=10, drain=[Failure.RESET]), "--mode", "none"),
            "this is the baseline without the sidecar; run without --mode none to compare",
            id="baseline",
        ),
        pytest.param(
            result([native_pod()], tally(ok=10, exited=[Failure.REFUSED]), "--prestop-delay", "1"),
            "the prestop delay (1s) does not cover the endpoint propagation (2s+)",
            id="prestop-delay-shorter-than-propagation",
        ),
        pytest.param(
            result(
                [native_pod()],
                tally(ok=10, drain=[Failure.RESET]),
                "--prestop-delay",
                "2.5",
                "--propagation-delay",
                "2",
                "--propagation-spread",
                "1",
            ),
            "the prestop delay (2.5s) does not cover the endpoint propagation (2s+)",
            id="prestop-delay-shorter-than-propagation-plus-spread",
        ),
        pytest.param(
            result([native_pod(app_exit=10.01, app_killed=10.0, sidecar_exit=10.5)], tally(ok=10)),
            "the app drains for longer than the grace period leaves it: raise the grace period or drain faster",
            id="sigkill",
        ),
        pytest.param(result([native_pod()], tally(ok=10, drain=[Failure.RESET])), None, id="delay-covers-propagation"),
        pytest.param(
            result([native_pod(failed_after_removal=2)], tally(ok=10, drain=[Failure.RESET] * 2)),
            "keep-alive connections stayed on the deleted pods after their endpoints were removed (kube-proxy "
            "moves only new connections): answer `Connection: close` from t0 (the sidecar's GET /events)",
            id="pooled-l4-connections-stayed",
        ),
        pytest.param(
            result([native_pod(failed_after_removal=2)], tally(ok=10, drain=[Failure.RESET] * 2), "--balancer", "l7"),
            None,
            id="l7-is-not-told-about-conntrack",
        ),
        pytest.param(
            result([native_pod()], tally(ok=10, running=[Failure.SERVER_ERROR]), "--prestop-delay", "1"),
            None,
            id="failures-while-running-are-not-the-delay",
        ),
    ],
)
def test_advice_names_the_likely_cause(document: Document, hint: str | None) -> None:
    assert document["verdict"] == "fail"
    assert advice(document) == hint


def test_render_draws_every_pod_and_ends_with_a_newline() -> None:
    records = [native_pod("pod-a"), native_pod("pod-b", app_exit=10.01, app_killed=10.0, sidecar_exit=10.5)]
    document = result(records, tally(ok=30, drain=[Failure.RESET]), duration=7.25)
    text = render(document)
    assert text.endswith("\n")
    assert not text.endswith("\n\n")
    assert text.isascii()
    lines = text.splitlines()
    assert lines[0] == "mode native, 2 pods replaced in 7.2s"
    for legend in LEGEND:
        assert f"  {legend}" in lines
    for pod_doc in document["pods"]:
        (line,) = [line for line in lines if line.startswith(f"  {pod_doc['name']}")]
        assert f"|{timeline_bar(pod_doc)}|" in line
    assert "SIGKILLed: app" in text
    assert "sidecar: clean - drain ended 5.2 s before SIGKILL; no late connection" in text
    assert requests_table(document["requests"])[0] in lines
    assert lines[-len(verdict_lines(document)) :] == verdict_lines(document)


def test_render_of_a_pod_without_a_sidecar_says_so() -> None:
    text = render(result([none_pod("pod-z")], tally(ok=5), "--mode", "none"))
    assert "report: none (no sidecar)" in text
    assert "pod-z" in text


def test_render_without_pods_still_gives_the_requests_and_verdict() -> None:
    text = render(result([], Tally()))
    assert text.startswith("mode native, 0 pods replaced")
    assert "requests: 0 sent, 0 failed" in text
    assert "verdict: FAIL" in text
    assert text.endswith("\n")


def test_render_reads_only_the_document() -> None:
    # What --json prints and what a person reads must agree: the text is a function of the
    # document alone, so a document that went through JSON renders the same.
    document: Any = result([native_pod("pod-1"), run_pod("pod-2")], tally(ok=12, exited=[Failure.REFUSED]))
    assert render(json.loads(json.dumps(document))) == render(document)


def test_render_shows_the_load_the_failures_by_connection_and_requests_after_the_removal() -> None:
    counted = tally(ok=10)
    counted.add("drain", Result(None, Failure.RESET), reused=True)
    counted.connections_opened = 5
    text = render(result([native_pod("pod-a", failed_after_removal=1)], counted))
    lines = text.splitlines()
    assert (
        "load: 16 pooled keep-alive connections, l4 balancer; 5 connections opened, 1 requests on reused ones" in lines
    )
    assert "  failed: 0 of 10 on new connections; 1 of 1 on reused connections (1 reset)" in lines
    assert "4 requests after its endpoint removal (1 failed)" in text


def test_render_of_fresh_connections_says_so_and_shows_no_connection_split_without_failures() -> None:
    text = render(result([native_pod()], tally(ok=10), "--client", "fresh"))
    assert "load: a new connection per request, l4 balancer; 0 connections opened, 0 requests on reused ones" in text
    assert "failed:" not in text


def test_render_of_an_app_sigkilled_at_the_grace_period_says_it_was_still_running_not_drained() -> None:
    # An app that ignores its SIGTERM: signalled at 3 s, still running at 10 s, SIGKILLed.
    record = native_pod("pod-k", hook_end=3.0, app_exit=10.01, app_killed=10.0, sidecar_exit=10.5)
    record.containers[APP].stop_signal = "SIGTERM"
    text = render(result([record], tally(ok=5)))
    assert "app drained" not in text
    assert "app still running 7.00s after its SIGTERM: SIGKILLed at 10.00s, app exit status 137" in text


def test_render_of_an_app_that_drained_says_how_long() -> None:
    text = render(result([native_pod("pod-d", hook_end=3.0, app_exit=4.5)], tally(ok=5)))
    assert "app drained 1.50s, app exit status 0" in text
