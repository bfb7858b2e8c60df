"""The policy scan (checkov) of the default render and of ci/all-on-values.yaml's: every failed check is
one the chart README names with its reason (its "Policy scan" table), and the scan can fail."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.charts.helm import CHART, all_on_values, manifests, render
from tests.charts.scanner import checkov, scan

# What stays, per render: the README's table gives each one's reason.
EXPECTED_FAILED = {
    "default": {"CKV_K8S_8", "CKV_K8S_9", "CKV_K8S_11", "CKV_K8S_15", "CKV_K8S_35", "CKV_K8S_43", "CKV2_K8S_6"},
    "all-on": {"CKV_K8S_11", "CKV_K8S_35"},
}
EXPECTED_SKIPPED = {"default": set[str](), "all-on": {"CKV_K8S_8", "CKV_K8S_9"}}


@pytest.fixture(scope="module")
def findings(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """Per render: failed and skipped check ids, and the number of passed checks. One scan per render:
    checkov's graph checks join objects across files (the all-on NetworkPolicy would cover the default pods)."""
    results: dict[str, dict[str, Any]] = {}
    for name, values in [("default", None), ("all-on", all_on_values())]:
        directory: Path = tmp_path_factory.mktemp(name)
        (directory / f"{name}.yaml").write_text(yaml.safe_dump_all(manifests(render(values))))
        checks = scan(directory)["results"]
        results[name] = {
            "failed": {check["check_id"] for check in checks["failed_checks"]},
            "skipped": {check["check_id"] for check in checks["skipped_checks"]},
            "passed": len(checks["passed_checks"]),
        }
    return results


@pytest.mark.parametrize("render_name", ["default", "all-on"])
def test_policy_scan_fails_only_the_checks_the_readme_names(
    findings: dict[str, dict[str, Any]], render_name: str
) -> None:
    found = findings[render_name]
    assert found["passed"] > 50  # the scan did run over the objects
    assert found["failed"] == EXPECTED_FAILED[render_name]
    assert found["skipped"] == EXPECTED_SKIPPED[render_name]


def test_policy_scan_readme_gives_each_remaining_finding_a_reason() -> None:
    readme = (CHART / "README.md").read_text()
    section = readme[readme.index("## Policy scan") :]
    section = section[: section.index("\n## ", 1)]
    named = set(re.findall(r"`(CKV2?_K8S_\d+)`", section))
    assert set().union(*EXPECTED_FAILED.values(), *EXPECTED_SKIPPED.values()) <= named


def test_policy_scan_reports_a_privileged_container(tmp_path: Path) -> None:
    # Guards the tests above: the scanner does fail a manifest that breaks its policies.
    (deployment,) = [o for o in manifests(render({"sidecar": {"mode": "classic"}})) if o["kind"] == "Deployment"]
    deployment["spec"]["template"]["spec"]["containers"][0]["securityContext"] = {"privileged": True}
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(deployment))
    failed = {check["check_id"] for check in scan(tmp_path)["results"]["failed_checks"]}
    assert "CKV_K8S_16" in failed  # "Container should not be privileged"


def test_policy_scan_missing_checkov_fails_under_ci(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("CHECKOV", str(tmp_path / "absent"))
    monkeypatch.setattr("tests.charts.scanner.ROOT", tmp_path)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="checkov not found"):
        checkov()
