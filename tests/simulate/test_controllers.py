"""The workload controllers' update order, on stand-in pods whose readiness and exit come at the
controller's next wait: what is created and deleted, and in what order, per strategy."""

from __future__ import annotations

import dataclasses
from typing import Any, cast

import pytest

from sidecar.simulate.controllers import roll
from sidecar.simulate.strategy import Kind, Strategy, StrategyType


@dataclasses.dataclass(eq=False)
class StandInPod:
    name: str
    is_ready: bool = False
    is_deleted: bool = False
    is_gone: bool = False


class StandInCluster:
    """Each wait makes every created pod ready and every deleted pod gone, and logs the actions."""

    def __init__(self) -> None:
        self.log: list[str] = []
        self.pods: list[StandInPod] = []

    def create(self, name: str) -> Any:
        pod = StandInPod(name)
        self.pods.append(pod)
        self.log.append(f"+{name}")
        return pod

    def delete(self, pod: Any) -> None:
        pod.is_deleted = True
        self.log.append(f"-{pod.name}")

    def is_available(self, pod: Any) -> bool:
        return bool(pod.is_ready and not pod.is_deleted)

    async def changed(self) -> None:
        self.log.append("|")
        for pod in self.pods:
            pod.is_ready = not pod.is_deleted
            pod.is_gone = pod.is_deleted


async def rolled(strategy: Strategy, replicas: int) -> str:
    cluster = StandInCluster()
    old = [StandInPod(f"old-{n}", is_ready=True) for n in range(1, replicas + 1)]
    cluster.pods.extend(old)
    await roll(cast(Any, cluster), strategy, cast(Any, old))
    return " ".join(cluster.log)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("strategy", "replicas", "log"),
    [
        pytest.param(Strategy(), 3, "+new-1 | -old-1 +new-2 | -old-2 +new-3 | -old-3", id="deployment-defaults"),
        # maxSurge 0: the old pod is deleted first, its replacement created at once (not once it is gone).
        pytest.param(Strategy(max_surge="0"), 1, "-old-1 +new-1 |", id="deployment-no-surge-one-replica"),
        pytest.param(
            Strategy(type=StrategyType.RECREATE), 2, "-old-1 -old-2 | +new-1 +new-2 |", id="deployment-recreate"
        ),
        pytest.param(
            Strategy(kind=Kind.STATEFULSET), 2, "-old-2 | +new-2 | -old-1 | +new-1 |", id="statefulset-ordered"
        ),
        pytest.param(Strategy(kind=Kind.DAEMONSET), 2, "-old-1 | +new-1 | -old-2 | +new-2 |", id="daemonset"),
        pytest.param(
            Strategy(kind=Kind.DAEMONSET, max_surge="1", max_unavailable="0"),
            2,
            "+new-1 | -old-1 +new-2 | -old-2",
            id="daemonset-surge",
        ),
    ],
)
async def test_roll_creates_and_deletes_in_the_controllers_order(strategy: Strategy, replicas: int, log: str) -> None:
    assert await rolled(strategy, replicas) == log
