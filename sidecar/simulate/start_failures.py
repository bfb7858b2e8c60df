"""Why a simulated pod did not start, in one line a person can act on: which container holds the
start, which probe has not passed and where its log is kept, an app that does not listen where
the kubelet looks. Words only: sidecar.simulate.kubelet decides when a start has failed."""

from __future__ import annotations

import dataclasses
from collections.abc import Container, Mapping
from pathlib import Path

from sidecar.simulate.container import log_path
from sidecar.simulate.listeners import unreachable_listeners, unreachable_message
from sidecar.simulate.podspec import APP_PORT, PORT_PLACEHOLDER, ContainerSpec, HttpGet, PodTemplate, Probe


@dataclasses.dataclass(frozen=True)
class StartFailures:
    name: str  # the pod's
    template: PodTemplate
    ports: Mapping[str, int]
    address: str  # the pod's IP
    workdir: Path  # where its containers' logs are kept

    def not_ready(
        self, timeout_seconds: float, started: Container[str], ready: Mapping[str, bool], launched: Container[str]
    ) -> str:
        """Which container holds the pod's start, and where its log is (kept by the caller).
        `started`: containers whose startup probe passed; `launched`: those whose process runs."""
        for spec in self.template.sidecars:
            if spec.name not in started:
                waiting = ", ".join(c.name for c in self.template.containers)
                hint = self.probe_hint(spec, spec.startup, launched)
                return (
                    f"{spec.name} not started after {timeout_seconds:g}s{hint}; "
                    f"{waiting} not started: the kubelet starts them once the native sidecar has"
                )
        for spec in self.template.all_containers:
            if not ready.get(spec.name, False):
                hint = self.app_hint() if spec.serves_traffic else self.probe_hint(spec, spec.readiness, launched)
                return f"{spec.name} not ready after {timeout_seconds:g}s{hint}"
        return f"not ready after {timeout_seconds:g}s"

    def probe_hint(self, spec: ContainerSpec, probe: Probe | None, launched: Container[str]) -> str:
        log = log_path(self.workdir, spec.name)
        if spec.name not in launched:
            return " (its process was not started)"
        if probe is None:
            return f" (see {log})"
        action = probe.action
        port = self.ports[action.port]
        what = f"GET {action.path}" if isinstance(action, HttpGet) else "a TCP connection"
        return f" (its probe, {what} at {self.address}:{port}, has not passed; see {log})"

    def app_hint(self) -> str:
        app = next(c for c in self.template.containers if c.serves_traffic)
        port = self.ports[APP_PORT]
        if not any(PORT_PLACEHOLDER in arg for arg in app.argv):
            return (
                f" (the app's command has no {PORT_PLACEHOLDER}: it must listen on {self.address}:{port}, the pod's "
                "address and port, given as $HOST and $PORT)"
            )
        return f" (is the app listening on {self.address}:{port}? see {log_path(self.workdir, app.name)})"

    def listener_problem(self, table: Mapping[int, set[str]]) -> str | None:
        """A container listening where the kubelet's probes and hooks and the balancer, which all go
        to the pod IP, cannot reach it: what cannot reach it, or None."""
        unreachable = unreachable_listeners(self.ports, self.address, table)
        if not unreachable:
            return None
        symbol, where = next(iter(unreachable.items()))
        reason = unreachable_message(self.template, symbol, f"{where}:{self.ports[symbol]}", self.address)
        return f"{self.name}: {reason}"
