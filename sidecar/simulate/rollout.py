"""The rolling update, as a Deployment with maxSurge 1 and maxUnavailable 0 runs it: N old pods
serve behind the balancer under load; one by one a new pod starts and, once it is ready, an old
pod is deleted. It ends when every old pod has terminated and the balancer has caught up."""

from __future__ import annotations

import asyncio
import dataclasses
import random
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Final

from sidecar.simulate.endpoints import Balancer, Propagation
from sidecar.simulate.kubelet import Pod, PodRecord
from sidecar.simulate.load import LoadGenerator, Tally
from sidecar.simulate.podspec import ADMIN_PORT, APP_PORT, PodTemplate

# Steady traffic before the first deletion: the "running" phase is then measured too.
WARM_UP_SECONDS: Final = 1.0
POD_START_TIMEOUT_SECONDS: Final = 30.0


@dataclasses.dataclass(frozen=True)
class Plan:
    template: PodTemplate
    pods: int
    rate_per_second: float
    propagation: Propagation
    request_timeout_seconds: float
    seed: int
    workdir: Path


class PortAllocator:
    """Free loopback ports, none handed out twice in one run (each pod's own 'IP')."""

    def __init__(self) -> None:
        self._given: set[int] = set()

    def take(self) -> int:
        while True:
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                port: int = probe.getsockname()[1]
            if port not in self._given:
                self._given.add(port)
                return port


class Rollout:
    """Runs a Plan once. `tally` and `clock` are live while it runs (for a progress display);
    `deleted` holds the records of the pods it replaced."""

    def __init__(self, plan: Plan, on_event: Callable[[str], None]) -> None:
        self.plan = plan
        self.tally = Tally()
        self.deleted: list[PodRecord] = []
        self._on_event = on_event
        self._start = 0.0
        self._pods: list[Pod] = []
        self._ports = PortAllocator()
        self._balancer_changed = asyncio.Event()

    def clock(self) -> float:
        """Seconds since the rollout began."""
        return asyncio.get_running_loop().time() - self._start

    async def run(self) -> None:
        """Raises PodStartError when a pod cannot start; kills every pod before returning."""
        loop = asyncio.get_running_loop()
        self._start = loop.time()
        plan = self.plan
        balancer: Balancer[Pod] = Balancer(
            loop,
            plan.propagation,
            random.Random(plan.seed),  # noqa: S311 - a reproducible spread, not a secret
            on_applied=self._endpoint_changed,
        )
        self._balancer = balancer
        load = LoadGenerator(balancer, plan.rate_per_second, plan.request_timeout_seconds, self.tally)
        stop_load = asyncio.Event()
        load_task: asyncio.Task[None] | None = None
        try:
            old = [self._new_pod(f"old-{n}") for n in range(1, plan.pods + 1)]
            await asyncio.gather(*(pod.start(POD_START_TIMEOUT_SECONDS) for pod in old))
            await self._balancer_settled()
            self._on_event(f"{len(old)} pods serving; load at {plan.rate_per_second:g} requests/s")
            load_task = asyncio.create_task(load.run(stop_load), name="load")
            await asyncio.sleep(WARM_UP_SECONDS)
            deletions = []
            for n, pod in enumerate(old, start=1):
                await self._new_pod(f"new-{n}").start(POD_START_TIMEOUT_SECONDS)
                balancer.publish(pod, False)  # the endpoints controller and the kubelet act at once
                deletions.append(asyncio.create_task(pod.delete(), name=f"{pod.name}/delete"))
            await asyncio.gather(*deletions)
            await self._balancer_settled()
            self.deleted = [pod.record for pod in old]
            self._on_event("every old pod has terminated; the balancer knows")
        finally:
            stop_load.set()
            if load_task is not None:
                await load_task
            balancer.close()
            await asyncio.gather(*(pod.kill() for pod in self._pods), return_exceptions=True)

    def _new_pod(self, name: str) -> Pod:
        template = self.plan.template
        ports = {APP_PORT: self._ports.take()}
        if any(c.reports for c in template.all_containers):
            ports[ADMIN_PORT] = self._ports.take()
        pod = Pod(
            name,
            template,
            ports=ports,
            workdir=self.plan.workdir,
            clock=self.clock,
            on_event=self._on_event,
            on_readiness=self._readiness_changed,
        )
        self._pods.append(pod)
        return pod

    def _readiness_changed(self, pod: Pod, ready: bool) -> None:
        # A deleted pod's endpoint is already on its way out, whatever its probes say now.
        if not pod.is_deleted:
            self._balancer.publish(pod, ready)

    def _endpoint_changed(self, pod: Pod, ready: bool) -> None:
        if not ready and pod.is_deleted and pod.record.endpoint_removed_at is None:
            pod.record.endpoint_removed_at = self.clock()
            self._on_event(f"{pod.name} endpoint removed from the balancer")
        self._balancer_changed.set()

    async def _balancer_settled(self) -> None:
        while not self._balancer.is_settled():
            self._balancer_changed.clear()
            await self._balancer_changed.wait()
