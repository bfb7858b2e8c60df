"""The Grafana dashboard (charts/shutdown-sidecar/files/dashboard.json): every query parses as PromQL once
Grafana's variables are substituted, names only metrics the sidecar exports, and filters by the variables."""

from __future__ import annotations

import json
import re
from typing import Any

import promql_parser
import pytest

from tests.charts.helm import CHART

DASHBOARD = json.loads((CHART / "files" / "dashboard.json").read_text())
# SPEC.md's metrics; histograms add their _bucket, _sum and _count series.
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
    "sidecar_app_connections",
    "sidecar_app_inflight",
    "sidecar_late_connections_total",
    "sidecar_last_late_connection_seconds",
    "sidecar_build_info",
} | {
    f"{histogram}{suffix}"
    for histogram in ("sidecar_shutdown_phase_duration_seconds", "sidecar_shutdown_duration_seconds")
    for suffix in ("_bucket", "_sum", "_count")
}
# What Grafana puts in place of its variables, in forms PromQL accepts.
VARIABLES = {"$__rate_interval": "1m", "$namespace": "shop|web", "$workload": "web"}
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
VARIABLE_QUERIES = [
    pytest.param(variable["query"]["query"], id=f"variable-{variable['name']}")
    for variable in DASHBOARD["templating"]["list"]
    if variable["type"] == "query"
]


@pytest.mark.parametrize("expr", QUERIES)
def test_dashboard_query_names_only_sidecar_metrics_filtered_by_the_variables(expr: str) -> None:
    found = selectors(expr)
    assert found
    for selector in found:
        assert selector.name in METRICS
        labels = {matcher.name for matcher in selector.matchers.matchers}
        assert {"namespace", "workload"} <= labels, f"{selector.name} is not filtered by $namespace and $workload"


@pytest.mark.parametrize("expr", QUERIES)
def test_dashboard_query_takes_rates_over_the_rate_interval(expr: str) -> None:
    for window in re.findall(r"\[([^\]]+)\]", expr):
        assert window == "$__rate_interval"


@pytest.mark.parametrize("query", VARIABLE_QUERIES)
def test_dashboard_variable_query_reads_build_info(query: str) -> None:
    match = re.fullmatch(r"label_values\((.+), (\w+)\)", query)
    assert match, query
    assert [s.name for s in selectors(match.group(1))] == ["sidecar_build_info"]


def test_dashboard_has_namespace_and_workload_variables() -> None:
    names = [variable["name"] for variable in DASHBOARD["templating"]["list"]]
    assert names == ["datasource", "namespace", "workload"]


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
        "sidecar_app_inflight",
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
