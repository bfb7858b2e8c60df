"""The rollout: N old pods serve behind the balancer under load, and the workload's controller
(sidecar.simulate.controllers) replaces them as its strategy says. Owns the pods, their addresses
and ports, and what the balancer hears of them (EndpointSlice conditions). It ends when every old
pod has terminated and the balancer has caught up."""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, Final

from sidecar.simulate.controllers import roll
from sidecar.simulate.endpoints import Balancer, Conditions, Propagation
from sidecar.simulate.kubelet import Pod, PodStartError
from sidecar.simulate.lateness import ENDPOINT_UPDATE, Lateness, watch_loop_lag
from sidecar.simulate.load import LoadGenerator, Tally
from sidecar.simulate.pod_network import AddressAllocator, PortAllocator
from sidecar.simulate.podspec import ADMIN_PORT, APP_PORT, PodTemplate
from sidecar.simulate.pool import BalancerKind, ClientKind
from sidecar.simulate.records import PodRecord
from sidecar.simulate.strategy import Strategy
from sidecar.simulate.traffic import traffic_for
from sidecar.simulate.warm_up import FIXED_HOLD_WARM_UP_SECONDS

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
    client: ClientKind = ClientKind.POOLED
    balancer: BalancerKind = BalancerKind.L4
    connections: int = 16
    strategy: Strategy = dataclasses.field(default_factory=Strategy)
    latency_seconds: float = 0.0  # one network hop, one way (sidecar.simulate.traffic)
    load_shape: str = "steady"  # sidecar.simulate.load.LOAD_SHAPES
    # Under load before the first deletion: the "running" phase is measured too, and an auto
    # hold's history is a long-running pod's (sidecar.simulate.warm_up).
    warm_up_seconds: float = FIXED_HOLD_WARM_UP_SECONDS


class RolloutHalted(Exception):
    """A container crashed: the rollout cannot finish as a controller would wait for it."""


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
        # Not from --seed: two rehearsals at once must not walk the same ports in the same order.
        self._ports = PortAllocator(random.SystemRandom())
        self._addresses = AddressAllocator()
        self._balancer_changed = asyncio.Event()
        self._changed = asyncio.Event()  # for the controller: a readiness, an availability, an exit
        self._tasks: list[asyncio.Task[None]] = []  # pod starts and deletions
        self._deletions: list[asyncio.Task[None]] = []
        self._ready_since: dict[Pod, float] = {}
        self.lateness = Lateness()  # how late the rehearsal itself ran: complete once run() returns

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
        traffic = traffic_for(plan.client, plan.balancer, balancer, plan.connections, plan.latency_seconds)
        load = LoadGenerator(
            traffic,
            plan.rate_per_second,
            plan.request_timeout_seconds,
            self.tally,
            plan.load_shape,
            lateness=self.lateness,
            origin=self._start,
        )
        stop_load = asyncio.Event()
        load_task: asyncio.Task[None] | None = None
        lag_task = asyncio.create_task(watch_loop_lag(self.lateness, self.clock), name="loop-lag")
        try:
            old = [self._new_pod(f"old-{n}") for n in range(1, plan.pods + 1)]
            await start_together(old)
            await self._balancer_settled()
            self._on_event(f"{len(old)} pods serving; load at {plan.rate_per_second:g} requests/s")
            load_task = asyncio.create_task(load.run(stop_load), name="load")
            await asyncio.sleep(plan.warm_up_seconds)
            try:
                await roll(self, plan.strategy, old)
            except RolloutHalted as halted:
                self._on_event(f"rollout halted: {halted}")
            await asyncio.gather(*self._deletions)  # every deletion to its end
            await self._balancer_settled()
            stop_load.set()
            await load_task  # the requests still in flight go to the new pods
            self.deleted = [pod.record for pod in old if pod.is_deleted]
            self._on_event("every old pod has terminated; the balancer knows")
        finally:
            # Interrupted or failed: no wait for requests in flight, the pods go first.
            if load_task is not None:
                load_task.cancel()
            for task in self._tasks:
                task.cancel()
            balancer.close()
            await asyncio.gather(*(pod.kill() for pod in self._pods), return_exceptions=True)
            if load_task is not None:
                await asyncio.gather(load_task, return_exceptions=True)
            lag_task.cancel()
            self.lateness.add_records(pod.record for pod in self._pods)

    @property
    def records(self) -> list[PodRecord]:
        """Every pod's record, old and new."""
        return [pod.record for pod in self._pods]

    @property
    def crashes(self) -> list[str]:
        """'<pod>: <container> exited ...' for every container that exited while its pod was not
        deleted: a crash (or a port taken by someone else), whatever the requests say."""
        return [f"{pod.name}: {crash}" for pod in self._pods for crash in pod.record.crashes]

    def _new_pod(self, name: str) -> Pod:
        template = self.plan.template
        ports = {APP_PORT: self._ports.take()}
        if any(c.reports for c in template.all_containers):
            ports[ADMIN_PORT] = self._ports.take()
        pod = Pod(
            name,
            template,
            ports=ports,
            address=self._addresses.take(),
            workdir=self.plan.workdir,
            clock=self.clock,
            on_event=self._on_event,
            on_readiness=self._readiness_changed,
        )
        self._pods.append(pod)
        return pod

    # --- the Cluster the controllers act through ------------------------------------------------

    def create(self, name: str) -> Pod:
        pod = self._new_pod(name)
        self._spawn(pod.start(POD_START_TIMEOUT_SECONDS), f"{name}/start")
        return pod

    def delete(self, pod: Pod) -> None:
        # The endpoint becomes terminating (ready=false, serving=the pod's Ready condition) as the
        # kubelet starts the termination: both follow the pod's deletion at once.
        self._balancer.publish(pod, Conditions.of_pod(pod.is_ready, is_deleted=True))
        self._deletions.append(self._spawn(pod.delete(), f"{pod.name}/delete"))

    def is_available(self, pod: Pod) -> bool:
        since = self._ready_since.get(pod)
        return since is not None and not pod.is_deleted and self.clock() - since >= self.plan.strategy.min_ready_seconds

    async def changed(self) -> None:
        if self.crashes:
            # A controller would wait for availability that never comes (until its progress
            # deadline): the rehearsal stops here, and the crash fails it.
            raise RolloutHalted(self.crashes[0])
        for task in self._tasks:
            failure = task.exception() if task.done() and not task.cancelled() else None
            if failure is not None:
                raise failure
        self._changed.clear()
        await self._changed.wait()

    def _spawn(self, coroutine: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.create_task(coroutine, name=name)
        task.add_done_callback(lambda _: self._changed.set())
        self._tasks.append(task)
        return task

    def _readiness_changed(self, pod: Pod, ready: bool) -> None:
        # After the deletion too: `serving` follows the pod's Ready condition until it is gone.
        self._balancer.publish(pod, Conditions.of_pod(ready, pod.is_deleted))
        if ready and not pod.is_deleted:
            self._ready_since[pod] = self.clock()
            # minReadySeconds later the pod counts as available: the controller looks again then.
            asyncio.get_running_loop().call_later(self.plan.strategy.min_ready_seconds, self._changed.set)
        else:
            self._ready_since.pop(pod, None)
        self._changed.set()

    def _endpoint_changed(self, pod: Pod, ready: bool) -> None:
        now = self.clock()
        due = now - self._balancer.applied_late_seconds
        self.lateness.action_late(pod.name, ENDPOINT_UPDATE, due, now)
        if not ready and pod.is_deleted and pod.record.endpoint_removed_at is None:
            pod.record.endpoint_removed_at = now
            pod.record.endpoint_removal_due_at = due
            self._on_event(f"{pod.name} endpoint removed from the balancer")
        self._balancer_changed.set()

    async def _balancer_settled(self) -> None:
        while not self._balancer.is_settled():
            self._balancer_changed.clear()
            await self._balancer_changed.wait()


async def start_together(pods: list[Pod]) -> None:
    """Start pods at once; the first PodStartError stops the others (no container is left
    starting behind the caller's back) and is raised as itself."""
    try:
        async with asyncio.TaskGroup() as group:
            for pod in pods:
                group.create_task(pod.start(POD_START_TIMEOUT_SECONDS), name=f"{pod.name}/start")
    except ExceptionGroup as failures:
        first = next((e for e in failures.exceptions if isinstance(e, PodStartError)), None)
        if first is None:
            raise
        raise first from None
