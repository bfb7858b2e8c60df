"""The alert rules (charts/shutdown-sidecar/files/alerts.yaml) through promtool: they load, each alert
fires and stays quiet where it should (alerts_test.yaml), and a wrong expectation is reported; and
the conventions every rule keeps (annotations, runbook sections, namespace scope, per-workload)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml

from tests.charts.helm import CHART
from tests.charts.promtool import promtool, run

RULES = CHART / "files" / "alerts.yaml"
UNIT_TESTS = Path(__file__).resolve().parent / "alerts_test.yaml"
RUNBOOK_BASE = "https://github.com/shutdown-sidecar/shutdown-sidecar/blob/main/charts/shutdown-sidecar/README.md"
ALERTS = {
    "ShutdownSidecarShutdownTimedOut",
    "ShutdownSidecarMarginLow",
    "ShutdownSidecarLateConnections",
    "ShutdownSidecarVanishedMidDrain",
    "ShutdownSidecarAdminTokenRefused",
    "ShutdownSidecarAdminPortAbused",
    "ShutdownSidecarConvergenceNearHold",
    "ShutdownSidecarAutoHoldAtMaximum",
}


def test_alerts_check_rules_passes() -> None:
    result = run("check", "rules", RULES)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in result.stdout


def test_alerts_unit_tests_pass() -> None:
    result = run("test", "rules", UNIT_TESTS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_alerts_unit_tests_cover_every_alert_firing_and_not_firing() -> None:
    rules = {rule["alert"] for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]}
    assert rules == ALERTS
    fired: set[str] = set()
    quiet: set[str] = set()
    for case in yaml.safe_load(UNIT_TESTS.read_text())["tests"]:
        for check in case["alert_rule_test"]:
            (fired if check["exp_alerts"] else quiet).add(check["alertname"])
    # Cases that expect alerts also prove the other pods in their series stay quiet.
    assert fired == ALERTS
    assert quiet == ALERTS


def test_alerts_unit_tests_report_a_wrong_expectation(tmp_path: Path) -> None:
    tests = yaml.safe_load(UNIT_TESTS.read_text())
    tests["rule_files"] = [str(RULES)]
    vanished = next(case for case in tests["tests"] if case["name"].startswith("a pod gone mid-drain"))
    firing = next(check for check in vanished["alert_rule_test"] if check["exp_alerts"])
    firing["exp_alerts"] = []  # claim the killed pod does not fire
    broken = tmp_path / "broken_test.yaml"
    broken.write_text(yaml.safe_dump(tests))
    result = run("test", "rules", broken)
    assert result.returncode != 0
    assert "ShutdownSidecarVanishedMidDrain" in result.stdout + result.stderr


def test_alerts_missing_promtool_fails_under_ci(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="promtool not found"):
        promtool()


def test_alerts_missing_promtool_skips_outside_ci(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="promtool not found"):
        promtool()


def rules() -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def github_anchor(heading: str) -> str:
    return re.sub(r"[^a-z0-9 _-]", "", heading.lower()).replace(" ", "-")


@pytest.mark.parametrize("rule", rules(), ids=lambda rule: rule["alert"])
def test_alerts_follow_the_mixin_conventions(rule: dict[str, Any]) -> None:
    annotations = rule["annotations"]
    assert set(annotations) == {"summary", "description", "runbook_url"}
    assert "{{" not in annotations["summary"]
    assert len(annotations["summary"]) <= 60
    assert "{{ $labels.namespace }}" in annotations["description"]
    assert "{{ $labels.workload }}" in annotations["description"]
    base, _, anchor = annotations["runbook_url"].partition("#")
    assert base == RUNBOOK_BASE
    readme = (CHART / "README.md").read_text()
    sections = {github_anchor(line.lstrip("#").strip()) for line in readme.splitlines() if line.startswith("### ")}
    assert anchor == rule["alert"].lower()
    assert anchor in sections


@pytest.mark.parametrize("rule", rules(), ids=lambda rule: rule["alert"])
def test_alerts_are_scoped_by_namespace_and_aggregated_per_workload(rule: dict[str, Any]) -> None:
    expr = promql_parser.parse(rule["expr"])
    # The outermost aggregation keeps exactly the workload's identity.
    aggregate = expr.lhs if isinstance(expr, promql_parser.BinaryExpr) else expr
    assert isinstance(aggregate, promql_parser.AggregateExpr), rule["expr"]
    assert sorted(aggregate.modifier.labels) == ["namespace", "workload"]
    selectors: list[promql_parser.VectorSelector] = []

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            selectors.append(node)

    promql_parser.walk(expr, visit)
    assert selectors
    for selector in selectors:
        # The chart replaces this matcher with the release's namespace (templates/prometheusrule.yaml).
        assert 'namespace=~".+"' in str(selector), str(selector)
