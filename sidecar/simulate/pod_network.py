"""Each simulated pod's own network identity: a loopback address of its own (its pod IP) and
ports that no other pod of the rehearsal is given. Hands them out; starts nothing."""

from __future__ import annotations

import random
import socket
from pathlib import Path
from typing import Final

from sidecar.simulate.kubelet import PodStartError

MAX_ADDRESS_HOST: Final = 0xFFFE  # 127.0.255.254: more pods than any rehearsal runs


def ephemeral_port_floor() -> int:
    """The lowest port the kernel gives outgoing connections (Linux default 32768)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


class AddressAllocator:
    """Each pod's own loopback address, as each real pod gets its own IP: 127.0.0.2, .3, ... (all
    of 127/8 is local on Linux; 127.0.0.1 is left to what is not a pod)."""

    def __init__(self) -> None:
        self._next = 2

    def take(self) -> str:
        if self._next > MAX_ADDRESS_HOST:
            raise PodStartError(f"more than {MAX_ADDRESS_HOST - 1} pods in one rehearsal")
        address = f"127.0.{self._next >> 8}.{self._next & 0xFF}"
        self._next += 1
        return address


class PortAllocator:
    """Free ports, none handed out twice in one run, although each pod has its own address: an
    app or sidecar that binds 0.0.0.0 (as most do in a container) must not take another pod's.
    Taken below
    the ephemeral range: there, the load generator's own outgoing connections cannot grab a port
    between its choice and the app's bind (which would fail the start with 'address in use')."""

    def __init__(self, rng: random.Random, lowest: int = 10000) -> None:
        ceiling = ephemeral_port_floor()
        self._candidates = list(range(lowest, ceiling)) if ceiling - lowest >= 1000 else []
        rng.shuffle(self._candidates)
        self._given: set[int] = set()

    def take(self) -> int:
        while self._candidates:
            port = self._candidates.pop()
            if port not in self._given and is_free(port):
                self._given.add(port)
                return port
        while True:  # no room below the ephemeral range: any free port
            with socket.socket() as probe:
                probe.bind(("", 0))
                port = int(probe.getsockname()[1])
            if port not in self._given:
                self._given.add(port)
                return port


def is_free(port: int) -> bool:
    """Free on every address: a socket bound to any 127.x address (or 0.0.0.0) takes the port."""
    with socket.socket() as probe:
        try:
            probe.bind(("", port))
        except OSError:
            return False
    return True
