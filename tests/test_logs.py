from __future__ import annotations

import json
import logging
import threading

from sidecar.logs import BackgroundStreamHandler, JsonFormatter, TextFormatter


def make_record(**fields: object) -> logging.LogRecord:
    record = logging.LogRecord("sidecar", logging.INFO, __file__, 1, "phase changed", None, None)
    record.fields = fields
    return record


def test_logs_json_line_carries_the_event_and_its_fields() -> None:
    line = JsonFormatter().format(make_record(**{"from": "running", "to": "prestop_delay"}))
    parsed = json.loads(line)
    assert "\n" not in line
    assert (parsed["msg"], parsed["level"], parsed["from"], parsed["to"]) == (
        "phase changed", "info", "running", "prestop_delay",
    )  # fmt: skip


def test_logs_text_line_is_an_event_phrase_with_key_values() -> None:
    line = TextFormatter().format(make_record(**{"from": "running", "to": "drain", "report": {"outcome": "clean"}}))
    assert line.endswith('info    phase changed from=running to=drain report={"outcome":"clean"}')


def test_logs_exceptions_stay_on_the_record() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        record = logging.LogRecord("sidecar", logging.ERROR, __file__, 1, "failed", None, sys.exc_info())
    assert "ValueError: boom" in json.loads(JsonFormatter().format(record))["exc"]
    assert "ValueError: boom" in TextFormatter().format(record)


class StalledStream:
    """stderr whose reader has stopped: every write blocks until `resume` is set."""

    def __init__(self) -> None:
        self.resume = threading.Event()
        self.blocked = threading.Event()
        self.text = ""

    def write(self, text: str) -> int:
        self.blocked.set()
        self.resume.wait()
        self.text += text
        return len(text)

    def flush(self) -> None:
        return None


def stalled_logger(capacity: int) -> tuple[logging.Logger, BackgroundStreamHandler, StalledStream]:
    stream = StalledStream()
    handler = BackgroundStreamHandler(stream, capacity=capacity)  # type: ignore[arg-type]
    handler.setFormatter(JsonFormatter())
    logger = logging.Logger(f"stalled-{id(stream)}")
    logger.addHandler(handler)
    return logger, handler, stream


def test_logs_a_stalled_stream_does_not_block_the_caller_and_overflow_is_counted() -> None:
    logger, handler, stream = stalled_logger(capacity=2)
    logger.warning("first")  # taken by the writer, which blocks on it
    assert stream.blocked.wait(5)
    for n in range(5):  # two wait in the queue, three are dropped; none of these calls blocks
        logger.warning("more", extra={"fields": {"n": n}})
    assert not handler.flush(timeout=0.05)  # the pipe is stalled: not written in time
    stream.resume.set()
    assert handler.flush(timeout=5)
    lines = [json.loads(line) for line in stream.text.splitlines()]
    # The count comes with the next line written once the pipe drains.
    assert [line["msg"] for line in lines] == ["first", "log lines dropped", "more", "more"]
    assert lines[1]["count"] == 3
    assert [line.get("n") for line in lines if line["msg"] == "more"] == [0, 1]


def test_logs_flush_waits_for_every_line_queued_before_it() -> None:
    logger, handler, stream = stalled_logger(capacity=100)
    stream.resume.set()
    for n in range(50):
        logger.warning("line", extra={"fields": {"n": n}})
    assert handler.flush(timeout=5)
    assert [json.loads(line)["n"] for line in stream.text.splitlines()] == list(range(50))
