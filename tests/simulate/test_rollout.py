"""The rollout's own parts: ports for the pods, and starting pods together."""

from __future__ import annotations

import asyncio
import random
import socket

import pytest

from sidecar.simulate.kubelet import PodStartError
from sidecar.simulate.pod_network import PortAllocator, ephemeral_port_floor, is_free
from sidecar.simulate.rollout import start_together


def test_port_allocator_gives_distinct_free_ports_below_the_ephemeral_range() -> None:
    allocator = PortAllocator(random.Random(7))
    ports = [allocator.take() for _ in range(40)]
    assert len(set(ports)) == 40
    assert all(10000 <= port < ephemeral_port_floor() for port in ports)
    assert all(is_free(port) for port in ports)


def test_port_allocator_skips_a_port_in_use() -> None:
    first = PortAllocator(random.Random(3)).take()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", first))
        taken.listen(1)
        assert not is_free(first)
        # The same seed draws the same first candidate, which is now taken.
        assert PortAllocator(random.Random(3)).take() != first


class StandInPod:
    def __init__(self, name: str, fails: bool) -> None:
        self.name = name
        self.fails = fails
        self.cancelled = False

    async def start(self, timeout_seconds: float) -> None:
        if self.fails:
            raise PodStartError(f"{self.name}: app exited with status 1 while starting")
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise


@pytest.mark.anyio
async def test_start_together_raises_the_first_start_error_and_stops_the_other_starts() -> None:
    starting = StandInPod("old-1", fails=False)
    failing = StandInPod("old-2", fails=True)
    with pytest.raises(PodStartError, match="old-2: app exited"):
        await start_together([starting, failing])  # type: ignore[list-item]
    assert starting.cancelled
