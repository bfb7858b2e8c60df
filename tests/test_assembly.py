"""The Sidecar's wiring, in-process; what it does end to end is in tests/e2e."""

from __future__ import annotations

import logging
import signal
import sys
import time
from collections.abc import Mapping
from typing import Any

import pytest

from sidecar.assembly import Sidecar, log_phase_change, settings_fields
from sidecar.config import Settings, TracingEnvironment, load_settings
from sidecar.deadline import Budget
from sidecar.lifecycle import DrainEndSource, Outcome, Phase, Timeline, Trigger
from sidecar.logs import LOGGER_NAME

COMMAND = [sys.executable, "-c", "pass"]  # never started here
SPEC_REPORT_KEYS = {
    "outcome", "trigger", "drain_end_source", "grace_period_seconds", "prestop_delay_seconds", "margin_seconds",
    "t0", "deadline", "phases", "late_connections", "last_late_connection_seconds", "errors",
}  # fmt: skip
TOKEN = "s3cret-admin-token"


def settings(**flags: str) -> Settings:
    return load_settings({"termination_log": "", **flags}, {})


def sidecar(command: list[str] | None = None, **flags: str) -> Sidecar:
    return Sidecar(settings(**flags), command, TracingEnvironment(False, {}))


def failing(checks: Mapping[str, Any]) -> dict[str, str]:
    return {name: reason for name, check in checks.items() if (reason := check()) is not None}


@pytest.mark.parametrize(
    ("command", "flags", "checks"),
    [
        pytest.param(None, {}, {"shutdown"}, id="serve"),
        pytest.param(None, {"app_port": "8080"}, {"shutdown", "app_port"}, id="serve-app-port"),
        pytest.param(None, {"native_sidecar": "true"}, {"shutdown"}, id="native-sidecar"),
        pytest.param(COMMAND, {}, {"shutdown", "app"}, id="run"),
        pytest.param(COMMAND, {"app_port": "8080"}, {"shutdown", "app", "app_port"}, id="run-app-port"),
    ],
)
@pytest.mark.anyio
async def test_assembly_readiness_has_the_shutdown_check_and_the_parts_checks(
    command: list[str] | None, flags: dict[str, str], checks: set[str]
) -> None:
    assert set(sidecar(command, **flags).readiness()) == checks


@pytest.mark.parametrize(
    ("command", "flags", "checks"),
    [
        pytest.param(None, {}, set(), id="serve"),
        pytest.param(None, {"app_port": "8080", "native_sidecar": "true"}, set(), id="serve-sources"),
        pytest.param(COMMAND, {}, {"app"}, id="run"),
        pytest.param(COMMAND, {"app_port": "8080"}, {"app"}, id="run-app-port"),
    ],
)
@pytest.mark.anyio
async def test_assembly_liveness_is_empty_in_serve_mode_and_the_app_in_run_mode(
    command: list[str] | None, flags: dict[str, str], checks: set[str]
) -> None:
    # An app port that closes is readiness's business; restarting the pod for it would not help.
    assert set(sidecar(command, **flags).liveness()) == checks


@pytest.mark.anyio
async def test_assembly_run_mode_liveness_fails_until_the_app_runs() -> None:
    assert failing(sidecar(COMMAND).liveness()) == {"app": "not started"}


@pytest.mark.anyio
async def test_assembly_sigterm_begins_the_shutdown_and_is_counted() -> None:
    assembled = sidecar()
    assert failing(assembled.readiness()) == {}
    registry = assembled.metrics.registry
    assert registry.get_sample_value("sidecar_signals_total", {"signal": "SIGTERM"}) == 0

    assembled.on_signal(signal.SIGTERM)

    assert assembled.timeline.phase is Phase.PRESTOP_DELAY
    assert assembled.timeline.trigger is Trigger.SIGNAL
    assert set(failing(assembled.readiness())) == {"shutdown"}
    assert registry.get_sample_value("sidecar_signals_total", {"signal": "SIGTERM"}) == 1
    assert registry.get_sample_value("sidecar_ready") == 0
    assert [name for name, _, _ in assembled.observations.events] == ["readiness failing", "signal"]
    assert assembled.sequence.observed == {}, "an ordinary SIGTERM does not end the drain"


@pytest.mark.anyio
async def test_assembly_an_ignored_signal_is_counted_and_starts_nothing() -> None:
    assembled = sidecar()
    assembled.on_other_signal(signal.SIGHUP)
    assert assembled.timeline.phase is Phase.RUNNING
    assert assembled.metrics.registry.get_sample_value("sidecar_signals_total", {"signal": "SIGHUP"}) == 1


@pytest.mark.anyio
async def test_assembly_native_sidecar_sigterm_ends_the_drain_with_source_sidecar_sigterm() -> None:
    assembled = sidecar(native_sidecar="true")
    assembled.on_signal(signal.SIGTERM)
    assert set(assembled.sequence.observed) == {DrainEndSource.SIDECAR_SIGTERM}
    assert assembled.sequence.sources == frozenset({DrainEndSource.SIDECAR_SIGTERM})
    assert set(failing(assembled.readiness())) == {"shutdown"}
    assert assembled.metrics.registry.get_sample_value("sidecar_signals_total", {"signal": "SIGTERM"}) == 1


@pytest.mark.anyio
async def test_assembly_native_sidecar_sigint_is_an_ordinary_shutdown() -> None:
    assembled = sidecar(native_sidecar="true")
    assembled.on_signal(signal.SIGINT)
    assert assembled.timeline.phase is Phase.PRESTOP_DELAY
    assert assembled.sequence.observed == {}


@pytest.mark.parametrize(
    ("command", "has_app_exit_status"), [pytest.param(None, False, id="serve"), pytest.param(COMMAND, True, id="run")]
)
@pytest.mark.anyio
async def test_assembly_status_is_a_report_with_the_spec_keys(
    command: list[str] | None, has_app_exit_status: bool
) -> None:
    assembled = sidecar(command, grace_period_seconds="12", prestop_delay_seconds="2")
    before = assembled.status()
    assert set(before) >= SPEC_REPORT_KEYS
    assert (before["phase"], before["t0"], before["grace_period_seconds"]) == ("running", None, 12)
    assert ("app_exit_status" in before) is has_app_exit_status
    assert ("stop_signal" in before) is has_app_exit_status

    assembled.on_signal(signal.SIGTERM)
    after = assembled.status()
    assert after["phase"] == "prestop_delay"
    assert after["t0"] is not None
    assert after["deadline"] == pytest.approx(after["t0"] + 12)
    assert set(after["phases"]) == {"prestop_delay"}


@pytest.mark.parametrize("token", [pytest.param(TOKEN, id="token"), pytest.param(None, id="no-token")])
def test_assembly_settings_fields_say_whether_the_token_is_set_never_what_it_is(token: str | None) -> None:
    fields = settings_fields(settings(**({} if token is None else {"admin_token": token})))
    assert fields["admin_token_set"] is (token is not None)
    assert "admin_token" not in fields
    assert TOKEN not in repr(fields)
    assert fields["grace_period_seconds"] == 30


def test_assembly_log_phase_change_logs_from_and_to(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER_NAME)
    timeline = Timeline(Budget(30, 5, 1))
    timeline.add_listener(log_phase_change)
    now = time.monotonic()
    timeline.begin(Trigger.PRESTOP, now)
    timeline.advance(Phase.DRAIN, now + 5)
    timeline.end_drain(DrainEndSource.CONNECTIONS, Outcome.UNKNOWN, now + 6, "the listener closed")

    records = [record for record in caplog.records if record.name == LOGGER_NAME]
    assert [record.getMessage() for record in records] == ["phase changed"] * 3
    fields = [record.fields for record in records]  # type: ignore[attr-defined]
    assert [(f["from"], f["to"]) for f in fields] == [
        ("running", "prestop_delay"),
        ("prestop_delay", "drain"),
        ("drain", "report"),
    ]
    assert fields[0]["trigger"] == "prestop"
    assert "trigger" not in fields[1]
    assert (fields[2]["outcome"], fields[2]["drain_end_source"]) == ("unknown", "connections")
    assert fields[2]["outcome_reason"] == "the listener closed"
    assert all(isinstance(f["after_t0_seconds"], float) for f in fields)
