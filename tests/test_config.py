from __future__ import annotations

import dataclasses

import pytest

from sidecar.config import Settings, SettingsError, load_settings, setting_specs
from sidecar.hold_rule import DEFAULT_HOLD_RULE


def test_config_every_setting_derives_flag_env_var_and_help() -> None:
    specs = list(setting_specs())
    assert [spec.name for spec in specs] == [field.name for field in dataclasses.fields(Settings)]
    for spec in specs:
        short_name = spec.name.removesuffix("_seconds")
        assert spec.flag == "--" + short_name.replace("_", "-")
        assert spec.env_var == "SIDECAR_" + short_name.upper()
        assert spec.help


def test_config_time_settings_carry_their_unit_while_flags_keep_the_contract_names() -> None:
    flags = {spec.name: (spec.flag, spec.env_var) for spec in setting_specs()}
    assert flags["grace_period_seconds"] == ("--grace-period", "SIDECAR_GRACE_PERIOD")
    assert flags["prestop_delay_seconds"] == ("--prestop-delay", "SIDECAR_PRESTOP_DELAY")
    assert flags["report_reserve_seconds"] == ("--report-reserve", "SIDECAR_REPORT_RESERVE")
    assert flags["linger_seconds"] == ("--linger", "SIDECAR_LINGER")


def test_config_defaults_match_the_contract() -> None:
    settings = load_settings({}, {})
    # SPEC.md says 0.0.0.0: "::" is its dual-stack superset (IPv4 as before, and IPv6), and falls
    # back to 0.0.0.0 where the kernel has no IPv6 (sidecar.admin.server.bind_admin_socket).
    assert (settings.host, settings.port) == ("::", 9180)
    assert load_settings({"host": "0.0.0.0"}, {}).host == "0.0.0.0"
    # SPEC.md's table says 5: issue #22 made auto (None) the default once its grid showed auto drop
    # no request wherever a fixed 5 s dropped none; its bounds keep their defaults.
    assert (settings.grace_period_seconds, settings.prestop_delay_seconds, settings.report_reserve_seconds) == (
        30,
        None,
        1,
    )
    assert settings.hold_rule == DEFAULT_HOLD_RULE
    assert (DEFAULT_HOLD_RULE.minimum_seconds, DEFAULT_HOLD_RULE.maximum_seconds) == (1, 15)
    assert (settings.log_format, settings.log_level, settings.linger_seconds) == ("json", "info", 0)
    assert settings.admin_token is None


def test_config_flags_win_over_the_environment() -> None:
    settings = load_settings(
        {"grace_period_seconds": "40"}, {"SIDECAR_GRACE_PERIOD": "50", "SIDECAR_PRESTOP_DELAY": "7"}
    )
    assert settings.grace_period_seconds == 40
    assert settings.prestop_delay_seconds == 7


@pytest.mark.parametrize(
    ("flags", "environ", "flag"),
    [
        pytest.param({"grace_period_seconds": "0"}, {}, "--grace-period", id="zero-grace"),
        pytest.param({"report_reserve_seconds": "-0.5"}, {}, "--report-reserve", id="negative"),
        pytest.param({"prestop_delay_seconds": "inf"}, {}, "--prestop-delay", id="infinite"),
        pytest.param({"port": "9180.5"}, {}, "--port", id="fractional-port"),
        pytest.param({"port": "+9180"}, {}, "--port", id="signed-port"),
        pytest.param({"app_port": "80_80"}, {}, "--app-port", id="underscored-port"),
        pytest.param({}, {"SIDECAR_LOG_LEVEL": "loud"}, "--log-level (from SIDECAR_LOG_LEVEL)", id="env"),
        pytest.param({"admin_token": "  "}, {}, "--admin-token", id="blank-token"),
        pytest.param({"grace_period_seconds": "10", "prestop_delay_seconds": "9"}, {}, "--prestop-delay", id="timing"),
        pytest.param({"grace_period_seconds": "1e10"}, {}, "--grace-period", id="grace-past-a-week"),
        pytest.param({"linger_seconds": "1e300"}, {}, "--linger", id="linger-past-a-week"),
        pytest.param({"report_reserve_seconds": "0"}, {}, "--report-reserve", id="no-report-reserve"),
        pytest.param({"report_reserve_seconds": "0.005"}, {}, "--report-reserve", id="report-reserve-of-5-ms"),
        pytest.param({"watch_process": "app(["}, {}, "--watch-process", id="bad-regex"),
        pytest.param({"admin_token": "t\u00f6ken"}, {}, "--admin-token", id="non-ascii-token"),
        pytest.param({"admin_token": "two words"}, {}, "--admin-token", id="token-with-space"),
        pytest.param({"prestop_delay_seconds": "automatic"}, {}, "--prestop-delay", id="delay-neither-number-nor-auto"),
        pytest.param(
            {"prestop_delay_seconds": "auto", "prestop_delay_min_seconds": "8", "prestop_delay_max_seconds": "4"},
            {},
            "--prestop-delay-min",
            id="auto-min-above-max",
        ),
        pytest.param({"prestop_quiet_confidence": "1"}, {}, "--prestop-quiet-confidence", id="confidence-one"),
        pytest.param({"prestop_quiet_confidence": "0"}, {}, "--prestop-quiet-confidence", id="confidence-zero"),
        pytest.param({"prestop_evidence": "request"}, {}, "--prestop-evidence", id="evidence-unknown"),
        pytest.param(
            {},
            {"SIDECAR_PRESTOP_EVIDENCE": ""},
            "--prestop-evidence (from SIDECAR_PRESTOP_EVIDENCE)",
            id="evidence-empty",
        ),
        pytest.param(
            {"prestop_delay_seconds": "auto", "grace_period_seconds": "10"},
            {},
            "--prestop-delay-max",
            id="auto-max-past-the-grace-budget",
        ),
        pytest.param({"grace_period_seconds": "10"}, {}, "--prestop-delay-max", id="default-auto-past-the-budget"),
        pytest.param(
            {},
            {"SIDECAR_PRESTOP_DELAY": "auto", "SIDECAR_GRACE_PERIOD": "12"},
            "--prestop-delay-max",
            id="auto-from-env-past-the-budget",
        ),
    ],
)
def test_config_bad_value_raises_naming_the_setting(flags: dict[str, str], environ: dict[str, str], flag: str) -> None:
    with pytest.raises(SettingsError) as raised:
        load_settings(flags, environ)
    assert raised.value.flag == flag
    assert str(raised.value).startswith(flag + ": ")


@pytest.mark.parametrize(
    ("pod", "workload"),
    [
        pytest.param("web-7d9f8b6c4-x2kfz", "web", id="deployment"),
        pytest.param("db-0", "db", id="statefulset"),
        pytest.param("node-agent-x2kfz", "node-agent", id="daemonset"),
        pytest.param("", None, id="not-in-kubernetes"),
    ],
)
def test_config_workload_is_derived_from_the_pod_name(pod: str, workload: str | None) -> None:
    settings = load_settings({}, {"POD_NAME": pod, "POD_NAMESPACE": "shop"})
    assert (settings.workload, settings.namespace) == (workload, "shop")


def test_config_explicit_workload_wins_over_the_pod_name() -> None:
    assert load_settings({"workload": "api"}, {"POD_NAME": "web-7d9f8b6c4-x2kfz"}).workload == "api"


def test_config_admin_token_never_appears_in_repr() -> None:
    settings = load_settings({"admin_token": "hunter2"}, {})
    assert settings.admin_token == "hunter2"
    assert "hunter2" not in repr(settings)


def test_config_termination_log_empty_switches_it_off() -> None:
    assert load_settings({"termination_log": ""}, {}).termination_log is None
    assert load_settings({"termination_log": "/var/log/report"}, {}).termination_log == "/var/log/report"


def test_config_default_termination_log_used_only_when_writable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sidecar.config.os.access", lambda path, mode: path == "/dev/termination-log")
    assert load_settings({}, {}).termination_log == "/dev/termination-log"
    monkeypatch.setattr("sidecar.config.os.access", lambda path, mode: False)
    assert load_settings({}, {}).termination_log is None


def test_config_report_reserve_floor_and_a_week_of_grace_are_accepted() -> None:
    settings = load_settings({"report_reserve_seconds": "0.25", "grace_period_seconds": str(7 * 24 * 3600)}, {})
    assert settings.report_reserve_seconds == 0.25


def test_config_watch_process_takes_a_valid_regular_expression() -> None:
    assert load_settings({"watch_process": r"^python .*app\.py"}, {}).watch_process == r"^python .*app\.py"


def test_config_prestop_delay_auto_budgets_its_maximum() -> None:
    settings = load_settings({"prestop_delay_max_seconds": "9"}, {"SIDECAR_PRESTOP_DELAY": "auto"})
    assert settings.prestop_delay_seconds is None
    assert settings.hold_rule is not None
    assert settings.hold_rule.maximum_seconds == 9
    assert settings.budget.prestop_delay_seconds == 9


@pytest.mark.parametrize(
    ("grace", "advice"),
    [
        pytest.param("10", "set --prestop-delay-max below 9 s, or --prestop-delay N for a fixed hold", id="room"),
        pytest.param("1.5", "raise --grace-period, or set --prestop-delay N for a fixed hold", id="no-room"),
    ],
)
def test_config_default_auto_hold_past_the_grace_budget_says_what_to_change(grace: str, advice: str) -> None:
    # The flag names a maximum the user may never have given (auto is the default): the line says what to set.
    with pytest.raises(SettingsError) as raised:
        load_settings({"grace_period_seconds": grace}, {})
    assert raised.value.flag == "--prestop-delay-max"
    assert raised.value.reason.startswith("the auto hold's maximum (15s) + report reserve (1s)")
    assert raised.value.reason.endswith(advice)


def test_config_prestop_evidence_defaults_to_connections_and_reaches_the_hold_rule() -> None:
    assert (
        dict((spec.flag, spec.env_var) for spec in setting_specs())["--prestop-evidence"] == "SIDECAR_PRESTOP_EVIDENCE"
    )
    auto = {"prestop_delay_seconds": "auto"}
    default = load_settings(auto, {}).hold_rule
    assert default is not None
    assert default.evidence == "connections"
    for flags, environ in (
        ({**auto, "prestop_evidence": "requests"}, {}),
        (auto, {"SIDECAR_PRESTOP_EVIDENCE": "Requests"}),
    ):
        rule = load_settings(flags, environ).hold_rule
        assert rule is not None
        assert rule.evidence == "requests"


def test_config_prestop_delay_number_keeps_its_meaning_and_ignores_the_auto_bounds() -> None:
    # The auto-only settings are accepted with a fixed delay and have no effect, --prestop-evidence too.
    settings = load_settings(
        {"prestop_delay_seconds": "3", "prestop_delay_max_seconds": "100", "prestop_evidence": "requests"}, {}
    )
    assert settings.hold_rule is None
    assert settings.budget.prestop_delay_seconds == 3


def test_config_node_ip_comes_from_host_ip() -> None:
    assert load_settings({}, {"HOST_IP": "10.0.0.7"}).node_ip == "10.0.0.7"
    assert load_settings({"node_ip": "::1"}, {"HOST_IP": "10.0.0.7"}).node_ip == "::1"
