"""The kubelet's probes: one attempt (httpGet passes on 200-399, tcpSocket on a connection), a
startup probe run until it passes or fails `failureThreshold` times, and a readiness probe run on
its period for the life of the container with its success and failure thresholds."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping

from sidecar.simulate.client import HOST, http_get, tcp_connect
from sidecar.simulate.podspec import HttpGet, Probe


async def probe_once(probe: Probe, ports: Mapping[str, int], host: str = HOST) -> bool:
    """One attempt at the pod's address: the kubelet probes the pod IP, not the container's
    loopback (https://kubernetes.io/docs/concepts/configuration/liveness-readiness-startup-probes/)."""
    port = ports[probe.action.port]
    if isinstance(probe.action, HttpGet):
        result = await http_get(
            port, probe.action.path, timeout_seconds=probe.timeout_seconds, headers=probe.action.headers, host=host
        )
        return result.status is not None and 200 <= result.status < 400
    return await tcp_connect(port, timeout_seconds=probe.timeout_seconds, host=host)


async def _wait_period(seconds: float, exited: asyncio.Event) -> None:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await exited.wait()


async def run_startup_probe(probe: Probe, ports: Mapping[str, int], exited: asyncio.Event, host: str = HOST) -> bool:
    """True once it passes; False after `failure_threshold` failures in a row, or if the
    container exits first (the kubelet would restart it; a rehearsal reports it instead)."""
    await _wait_period(probe.initial_delay_seconds, exited)
    failures = 0
    while not exited.is_set():
        if await probe_once(probe, ports, host):
            return True
        failures += 1
        if failures >= probe.failure_threshold:
            return False
        await _wait_period(probe.period_seconds, exited)
    return False


async def run_readiness_probe(
    probe: Probe,
    ports: Mapping[str, int],
    exited: asyncio.Event,
    on_change: Callable[[bool], None],
    host: str = HOST,
) -> None:
    """Until the container exits: ready after `success_threshold` passes in a row, not ready
    after `failure_threshold` failures in a row; `on_change` hears each verdict."""
    await _wait_period(probe.initial_delay_seconds, exited)
    successes = failures = 0
    while not exited.is_set():
        if await probe_once(probe, ports, host):
            successes, failures = successes + 1, 0
            if successes >= probe.success_threshold:
                on_change(True)
        else:
            successes, failures = 0, failures + 1
            if failures >= probe.failure_threshold:
                on_change(False)
        await _wait_period(probe.period_seconds, exited)
