"""The final metrics pushed to a Prometheus Pushgateway, for pods that vanish before a scrape.
The grouping key is {job, namespace, workload}: a Pushgateway keeps every group until it is
deleted, so a key per pod would grow without bound across rollouts of thousands of pods; per
workload, each shutdown replaces the last one of its workload, and the count stays bounded."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from prometheus_client.registry import CollectorRegistry

from sidecar.deadline import call_timeout
from sidecar.telemetry.delivery import ReportSink

JOB: Final = "shutdown-sidecar"


def grouping_key(namespace: str | None, workload: str | None) -> dict[str, str]:
    return {"namespace": namespace or "unknown", "workload": workload or "unknown"}


def pushgateway_sink(url: str, registry: CollectorRegistry, key: Mapping[str, str], deadline: float) -> ReportSink:
    """A report sink that PUTs `registry` (replacing the group) with a timeout that ends at
    `deadline` (time.monotonic()), so its thread does not outlive the report either."""

    def push(_: Mapping[str, Any]) -> None:
        # Imported in the report's thread, when a push is due: prometheus_client.exposition costs
        # every pod about 1.5 MB that only this one call needs (sidecar.lean_imports).
        from prometheus_client.exposition import push_to_gateway

        push_to_gateway(url, job=JOB, registry=registry, grouping_key=dict(key), timeout=call_timeout(deadline))

    return push
