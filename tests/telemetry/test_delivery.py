from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from sidecar.telemetry.delivery import TERMINATION_LOG_MAX_BYTES, deliver_report, termination_log_text
from sidecar.telemetry.report import AppActivity, Observations, WorkerActivity, build_report
from tests.telemetry.test_report import finished_timeline


def test_delivery_termination_log_text_fits_4096_bytes_and_keeps_the_outcome() -> None:
    document = build_report(finished_timeline(), 21, Observations(errors=["é" * 3000 for _ in range(20)]))
    text = termination_log_text(document)
    assert len(text.encode()) <= TERMINATION_LOG_MAX_BYTES
    parsed = json.loads(text)
    assert parsed["outcome"] == "clean"
    assert parsed["truncated"] is True


def test_delivery_small_document_is_written_whole() -> None:
    document = build_report(finished_timeline(), 21)
    assert json.loads(termination_log_text(document)) == document


def test_delivery_termination_log_drops_the_workers_first_when_too_long() -> None:
    workers = {f"worker-{n:03}": WorkerActivity(n) for n in range(256)}
    document = build_report(finished_timeline(), 21, Observations(app=AppActivity(workers=workers)))
    parsed = json.loads(termination_log_text(document))
    assert parsed["truncated"] is True
    assert parsed["app"]["workers"] == {}
    assert parsed["app"]["inflight"] == sum(range(256))
    assert "drain" in parsed["phases"]


@pytest.mark.anyio
async def test_delivery_a_hanging_sink_is_named_and_does_not_hold_the_rest(tmp_path: Path) -> None:
    release = threading.Event()
    path = tmp_path / "termination-log"
    document = build_report(finished_timeline(), 21)
    deadline = time.monotonic() + 0.5
    try:
        errors = await deliver_report(
            document,
            sinks={"stuck": lambda _: release.wait(30) and None, "broken": lambda _: 1 / 0},
            termination_log=str(path),
            deadline=deadline,
        )
        assert time.monotonic() < deadline
    finally:
        release.set()
    assert sorted(errors) == ["broken: ZeroDivisionError: division by zero", "stuck: gave up at the deadline"]
    assert json.loads(path.read_text())["errors"] == errors
