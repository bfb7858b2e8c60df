from __future__ import annotations

import json
import logging

from sidecar.logs import JsonFormatter, TextFormatter


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
