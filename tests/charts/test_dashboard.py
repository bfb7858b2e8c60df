"""The Grafana dashboard (charts/shutdown-sidecar/files/dashboard.json): every query (panels, annotations)
parses as PromQL once Grafana's variables are substituted, names only metrics the sidecar exports, and
filters by the variables; the grace period is a threshold, the panels link to the runbooks."""

from __future__ import annotations

import json
import re
from typing import Any

import promql_parser
import pytest
import yaml

from tests.charts.helm import CHART

RULES = CHART / "files" / "alerts.yaml"
DASHBOARD = json.loads((CHART / "files" / "dashboard.json").read_text())
# SPEC.md's metrics and the admin port's; histograms add their _bucket, _sum and _count series.
METRICS = {
    "sidecar_ready",
    "sidecar_shutdown_phase",
    "sidecar_grace_period_seconds",
    "sidecar_shutdown_start_timestamp_seconds",
    "sidecar_shutdown_deadline_timestamp_seconds",
    "sidecar_shutdown_margin_seconds",
    "sidecar_shutdowns_total",
    "sidecar_signals_total",
    "sidecar_prestop_requests_total",
    "sidecar_admin_unauthorized_total",
    "sidecar_admin_connections",
    "sidecar_admin_connections_closed_total",
    "sidecar_app_connections",
    "sidecar_app_connections_at_stop",
    "sidecar_app_inflight",
    "sidecar_late_connections_total",
    "sidecar_last_late_connection_seconds",
    "sidecar_build_info",
} | {
    f"{histogram}{suffix}"
    for histogram in (
        "sidecar_shutdown_phase_duration_seconds",
        "sidecar_shutdown_duration_seconds",
        "sidecar_endpoint_convergence_seconds",
        "sidecar_prestop_hold_seconds",
    )
    for suffix in ("_bucket", "_sum", "_count")
}
# What Grafana puts in place of its variables, in forms PromQL accepts.
VARIABLES = {"$__rate_interval": "1m", "$cluster": ".*", "$namespace": "shop|web", "$workload": "web", "$pod": ".*"}
FILTERS = {"cluster", "namespace", "workload", "pod"}
RUNBOOK_BASE = "https://github.com/shutdown-sidecar/shutdown-sidecar/blob/main/charts/shutdown-sidecar/README.md"
VARIABLE = re.compile(r"\$\{?\w+\}?")


def substitute(expr: str) -> str:
    for name, value in VARIABLES.items():
        expr = expr.replace(name, value)
    assert not VARIABLE.search(expr), f"unknown variable in {expr}"
    return expr


def selectors(expr: str) -> list[promql_parser.VectorSelector]:
    found: list[promql_parser.VectorSelector] = []

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            found.append(node)

    promql_parser.walk(promql_parser.parse(substitute(expr)), visit)
    return found


QUERIES = [
    pytest.param(target["expr"], id=f"{panel['title']}/{target['refId']}")
    for panel in DASHBOARD["panels"]
    for target in panel["targets"]
]
ANNOTATION_QUERIES = [
    pytest.param(annotation["expr"], id=f"annotation-{annotation['name']}")
    for annotation in DASHBOARD["annotations"]["list"]
]
VARIABLE_QUERIES = [
    pytest.param(variable["query"]["query"], id=f"variable-{variable['name']}")
    for variable in DASHBOARD["templating"]["list"]
    if variable["type"] == "query"
]


@pytest.mark.parametrize("expr", QUERIES + ANNOTATION_QUERIES)
def test_dashboard_query_names_only_sidecar_metrics_filtered_by_the_variables(expr: str) -> None:
    found = selectors(expr)
    assert found
    for selector in found:
        assert selector.name in METRICS
        labels = {matcher.name for matcher in selector.matchers.matchers}
        assert labels >= FILTERS, f"{selector.name} is not filtered by every variable"


@pytest.mark.parametrize("expr", QUERIES + ANNOTATION_QUERIES)
def test_dashboard_query_takes_rates_over_the_rate_interval(expr: str) -> None:
    for window in re.findall(r"\[([^\]]+)\]", expr):
        assert window == "$__rate_interval"


@pytest.mark.parametrize("query", VARIABLE_QUERIES)
def test_dashboard_variable_query_reads_build_info(query: str) -> None:
    match = re.fullmatch(r"label_values\((.+), (\w+)\)", query)
    assert match, query
    assert [s.name for s in selectors(match.group(1))] == ["sidecar_build_info"]


def test_dashboard_has_datasource_cluster_namespace_workload_and_pod_variables() -> None:
    names = [variable["name"] for variable in DASHBOARD["templating"]["list"]]
    assert names == ["datasource", "cluster", "namespace", "workload", "pod"]
    cluster = DASHBOARD["templating"]["list"][1]
    # A Prometheus without a cluster label: "All" must still match the empty value.
    assert cluster["includeAll"] is True
    assert cluster["allValue"] == ".*"


def test_dashboard_annotates_each_shutdowns_start_and_outcome() -> None:
    by_metric = {selectors(a["expr"])[0].name: a for a in DASHBOARD["annotations"]["list"]}
    start = by_metric["sidecar_shutdown_start_timestamp_seconds"]
    # The gauge holds t0 in seconds; Grafana places the annotation at the value (ms) itself.
    assert start["useValueForTime"] is True
    assert start["expr"].endswith("* 1000")
    outcome = by_metric["sidecar_shutdowns_total"]
    assert "outcome" in outcome["titleFormat"]


def test_dashboard_grace_period_is_a_threshold_not_a_series() -> None:
    for panel in DASHBOARD["panels"]:
        for target in panel["targets"]:
            if "sidecar_grace_period_seconds" not in target["expr"]:
                continue
            configs = [t for t in panel.get("transformations", []) if t["id"] == "configFromData"]
            assert [c["options"]["configRefId"] for c in configs] == [target["refId"]], panel["title"]
            (mapping,) = configs[0]["options"]["mappings"]
            assert (mapping["fieldName"], mapping["handlerKey"]) == (target["legendFormat"], "threshold1")
            assert panel["fieldConfig"]["defaults"]["custom"]["thresholdsStyle"]["mode"] == "line"


def test_dashboard_alert_panels_link_to_their_runbook_sections() -> None:
    alerts = {rule["alert"].lower() for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]}
    linked: set[str] = set()
    for panel in DASHBOARD["panels"]:
        (link,) = panel["links"]
        base, _, anchor = link["url"].partition("#")
        assert base == RUNBOOK_BASE
        linked.add(anchor)
    assert alerts <= linked


@pytest.mark.parametrize(
    "metric",
    [
        "sidecar_shutdowns_total",
        "sidecar_shutdown_duration_seconds_bucket",
        "sidecar_grace_period_seconds",
        "sidecar_shutdown_margin_seconds",
        "sidecar_shutdown_phase_duration_seconds_bucket",
        "sidecar_last_late_connection_seconds",
        "sidecar_shutdown_phase",
        "sidecar_app_connections",
        "sidecar_app_connections_at_stop",
        "sidecar_app_inflight",
        "sidecar_admin_unauthorized_total",
        "sidecar_admin_connections",
        "sidecar_admin_connections_closed_total",
    ],
)
def test_dashboard_shows_metric(metric: str) -> None:
    shown = {s.name for panel in DASHBOARD["panels"] for t in panel["targets"] for s in selectors(t["expr"])}
    assert metric in shown


def test_dashboard_parsing_rejects_a_broken_query() -> None:
    # Guards the tests above: the parser does refuse malformed PromQL.
    with pytest.raises(ValueError, match=r".+"):
        selectors('sum(rate(sidecar_shutdowns_total{namespace=~"$namespace"}[$__rate_interval])')


def test_dashboard_panels_do_not_overlap() -> None:
    cells: set[tuple[int, int]] = set()
    for panel in DASHBOARD["panels"]:
        grid = panel["gridPos"]
        area = {
            (x, y) for x in range(grid["x"], grid["x"] + grid["w"]) for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not cells & area, panel["title"]
        assert grid["x"] + grid["w"] <= 24
        cells |= area
