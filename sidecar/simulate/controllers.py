"""The workload controllers' update loops, as the Deployment, StatefulSet and DaemonSet controllers
run them: which pod to create or delete next, and what to wait for. They act through a Cluster
(sidecar.simulate.rollout) and never touch a process, a probe or the balancer themselves."""

from __future__ import annotations

from typing import Protocol

from sidecar.simulate.kubelet import Pod
from sidecar.simulate.strategy import Kind, Strategy, StrategyType


class Cluster(Protocol):
    def create(self, name: str) -> Pod:
        """A new pod, starting in the background."""

    def delete(self, pod: Pod) -> None:
        """Delete the pod: its endpoint becomes terminating while the kubelet starts its termination."""

    def is_available(self, pod: Pod) -> bool:
        """Ready (and not deleted) for at least minReadySeconds."""

    async def changed(self) -> None:
        """Until something changes (a readiness, an availability, a pod gone). Raises
        PodStartError when a pod could not start."""


async def roll(cluster: Cluster, strategy: Strategy, old: list[Pod]) -> list[Pod]:
    """Replace every pod of `old`; returns the new pods once each is available (and every old pod
    is at least deleted)."""
    if strategy.kind is Kind.STATEFULSET:
        return await _ordered(cluster, old)
    if strategy.type is StrategyType.RECREATE:
        return await _recreate(cluster, old)
    if strategy.kind is Kind.DAEMONSET:
        return await _per_node(cluster, strategy, old)
    return await _rolling(cluster, strategy, old)


async def _rolling(cluster: Cluster, strategy: Strategy, old: list[Pod]) -> list[Pod]:
    # The Deployment controller: at most replicas + maxSurge pods not deleted (a terminating pod no
    # longer counts, so its replacement is created at once), at least replicas - maxUnavailable
    # available. https://kubernetes.io/docs/concepts/workloads/controllers/deployment/#rolling-update-deployment
    replicas = len(old)
    surge, unavailable = strategy.fenceposts(replicas)
    remaining, new = list(old), list[Pod]()

    def is_done() -> bool:
        return not remaining and len(new) == replicas and all(cluster.is_available(pod) for pod in new)

    while not is_done():
        while len(new) < replicas and len(remaining) + len(new) < replicas + surge:
            new.append(cluster.create(f"new-{len(new) + 1}"))
        available = sum(pod.is_ready for pod in remaining) + sum(cluster.is_available(pod) for pod in new)
        # Old pods that are not ready go first: deleting them costs no availability.
        remaining.sort(key=lambda pod: pod.is_ready)
        for _ in range(min(len(remaining), max(0, available - (replicas - unavailable)))):
            pod = remaining.pop(0)
            available -= pod.is_ready
            cluster.delete(pod)
        if len(new) < replicas and len(remaining) + len(new) < replicas + surge:
            continue  # a deletion made room: its replacement is created at once
        if not is_done():
            await cluster.changed()
    return new


async def _recreate(cluster: Cluster, old: list[Pod]) -> list[Pod]:
    # Every old pod is deleted, and the new ones are created only once none of them is left.
    # https://kubernetes.io/docs/concepts/workloads/controllers/deployment/#recreate-deployment
    for pod in old:
        cluster.delete(pod)
    while not all(pod.is_gone for pod in old):
        await cluster.changed()
    new = [cluster.create(f"new-{n}") for n in range(1, len(old) + 1)]
    while not all(cluster.is_available(pod) for pod in new):
        await cluster.changed()
    return new


async def _ordered(cluster: Cluster, old: list[Pod]) -> list[Pod]:
    # The StatefulSet controller: highest ordinal first; the pod is deleted, and its replacement
    # (same name, same identity) is created once it is gone; the next waits for it to be Ready
    # (and available for minReadySeconds). podManagementPolicy changes scaling, not this order.
    # https://kubernetes.io/docs/concepts/workloads/controllers/statefulset/#rolling-updates
    new: list[Pod] = []
    for ordinal in range(len(old), 0, -1):
        pod = old[ordinal - 1]
        cluster.delete(pod)
        while not pod.is_gone:
            await cluster.changed()
        replacement = cluster.create(f"new-{ordinal}")
        new.insert(0, replacement)
        while not cluster.is_available(replacement):
            await cluster.changed()
    return new


async def _per_node(cluster: Cluster, strategy: Strategy, old: list[Pod]) -> list[Pod]:
    # The DaemonSet controller: one pod per node (each old pod here stands for one node). Without
    # surge, up to maxUnavailable nodes at a time lose their pod, and each node's new pod is created
    # once the old one is gone; with maxSurge, the new pod starts beside the old one, which is deleted
    # once the new one is available.
    # https://kubernetes.io/docs/tasks/manage-daemon/update-daemon-set/
    surge, unavailable = strategy.fenceposts(len(old))
    replacements: dict[int, Pod] = {}
    deleted: set[int] = set()

    def is_done() -> bool:
        return len(deleted) == len(replacements) == len(old) and all(map(cluster.is_available, replacements.values()))

    while not is_done():
        for node, pod in enumerate(old):
            if surge:
                busy = sum(1 for n in replacements if n not in deleted)
                if node not in replacements and busy < surge:
                    replacements[node] = cluster.create(f"new-{node + 1}")
                if node in replacements and node not in deleted and cluster.is_available(replacements[node]):
                    deleted.add(node)
                    cluster.delete(pod)
                continue
            down = sum(1 for n in deleted if n not in replacements or not cluster.is_available(replacements[n]))
            if node not in deleted and down < unavailable:
                deleted.add(node)
                cluster.delete(pod)
            if node in deleted and node not in replacements and pod.is_gone:
                replacements[node] = cluster.create(f"new-{node + 1}")
        if not is_done():
            await cluster.changed()
    return [replacements[node] for node in range(len(old))]
