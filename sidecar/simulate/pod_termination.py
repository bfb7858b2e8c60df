"""A deleted pod's containers stopped in the kubelet's order: the app containers' preStop hooks and
stop signals concurrently, the native sidecars' hooks beside them, and the native sidecars' stop
signals only once every app container has exited, last started first. One container's own steps
(hook, stop signal, SIGKILL) are sidecar.simulate.termination's; this module only orders them.
Kubernetes: KEP-753 (sidecar containers, 1.29+),
https://kubernetes.io/docs/concepts/workloads/pods/sidecar-containers/"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Mapping

from sidecar.simulate.container import ContainerProcess
from sidecar.simulate.podspec import ContainerSpec, PodTemplate
from sidecar.simulate.records import Clock
from sidecar.simulate.termination import run_pre_stop_hook, stop_container


@dataclasses.dataclass(frozen=True)
class PodTermination:
    """What stopping one pod needs: its template and started containers, where its hooks go, the
    rehearsal's clock and where its events are said."""

    name: str
    template: PodTemplate
    containers: Mapping[str, ContainerProcess]
    address: str  # the pod's IP: hooks go there
    ports: Mapping[str, int]
    clock: Clock
    on_event: Callable[[str], None]

    async def run(self) -> None:
        """Returns when every container has exited (SIGKILLed at the latest)."""
        # The kubelet's own deadline (monotonic, as the loop's clock): the pod's, not the sidecar's budget.
        grace_deadline = time.monotonic() + self.template.grace_period_seconds
        # Native sidecars' own preStop hooks run as the termination starts, beside the app
        # containers'; their stop signals wait for the app containers.
        sidecar_hooks = [
            asyncio.create_task(self._run_hook(spec, grace_deadline), name=f"{self.name}/{spec.name}/preStop")
            for spec in self.template.sidecars
        ]
        try:
            # Without a sequence among them: the app containers are stopped concurrently.
            await asyncio.gather(*(self._stop(spec, grace_deadline, hook=True) for spec in self.template.containers))
            await asyncio.gather(*sidecar_hooks)
        finally:
            for task in sidecar_hooks:
                task.cancel()
        # Native sidecars only once every app container has exited, last started first.
        for spec in reversed(self.template.sidecars):
            await self._stop(spec, grace_deadline, hook=False)

    async def _run_hook(self, spec: ContainerSpec, grace_deadline: float) -> None:
        await run_pre_stop_hook(
            spec,
            self.containers[spec.name],
            address=self.address,
            ports=self.ports,
            grace_deadline=grace_deadline,
            clock=self.clock,
            on_event=self.on_event,
        )

    async def _stop(self, spec: ContainerSpec, grace_deadline: float, *, hook: bool) -> None:
        if hook:
            await self._run_hook(spec, grace_deadline)
        await stop_container(
            spec,
            self.containers[spec.name],
            after_hook=hook,
            grace_period_seconds=int(self.template.grace_period_seconds),
            grace_deadline=grace_deadline,
            clock=self.clock,
            on_event=self.on_event,
        )
