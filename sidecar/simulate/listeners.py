"""Which local addresses listen on a port, read from /proc/net/tcp and /proc/net/tcp6: how the
kubelet tells a pod whose container listens on 127.0.0.1 only (unreachable at its pod IP, as in a
cluster) from one still starting. Reads; decides nothing."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from typing import Final

from sidecar.simulate.podspec import APP_PORT, HOST_PLACEHOLDER, HttpGet, PodTemplate

TCP_TABLES: Final = ("/proc/net/tcp", "/proc/net/tcp6")
STATE_LISTEN: Final = "0A"
WILDCARDS: Final = frozenset({"0.0.0.0", "::"})


def decode_address(hex_address: str) -> str:
    """/proc/net/tcp's address (32-bit words in host byte order, little-endian here) as text;
    an IPv4-mapped IPv6 address as its IPv4 form."""
    raw = bytes.fromhex(hex_address)
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    address = ipaddress.ip_address(words)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def listening_addresses(port: int, tables: Iterable[str] = TCP_TABLES) -> set[str]:
    """Every local address with a socket listening on `port`."""
    found: set[str] = set()
    for table in tables:
        try:
            with open(table) as stream:
                lines = stream.read().splitlines()[1:]
        except FileNotFoundError:  # no IPv6 in this kernel
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 4 or fields[3] != STATE_LISTEN:
                continue
            address, _, hex_port = fields[1].rpartition(":")
            if int(hex_port, 16) == port:
                found.add(decode_address(address))
    return found


def unreachable_listeners(ports: Mapping[str, int], pod_address: str) -> dict[str, str]:
    """Port symbol -> the address it listens on, for each port listened on only at addresses
    that are neither the pod's nor a wildcard: nothing outside the pod's containers reaches it."""
    unreachable = {}
    for symbol, port in ports.items():
        addresses = listening_addresses(port)
        if addresses and not addresses & {pod_address, *WILDCARDS}:
            unreachable[symbol] = ", ".join(sorted(addresses))
    return unreachable


def unreachable_message(template: PodTemplate, symbol: str, listener: str, pod_address: str) -> str:
    """Who listens at `listener` instead of the pod's address, and what of the pod cannot reach it."""
    containers = template.all_containers
    owner = next((c.name for c in containers if (c.serves_traffic if symbol == APP_PORT else c.reports)), symbol)
    users = [f"{c.name} preStop hook GET {c.pre_stop.path}" for c in containers
             if isinstance(c.pre_stop, HttpGet) and c.pre_stop.port == symbol]  # fmt: skip
    for c in containers:
        users += [f"{c.name} {kind} probe" for kind, probe in (("startup", c.startup), ("readiness", c.readiness))
                  if probe is not None and probe.action.port == symbol]  # fmt: skip
    if symbol == APP_PORT:
        users.append("the balancer's traffic")
    return (
        f"{owner} listens on {listener} only, not on the pod's address {pod_address}: "
        f"{', '.join(users) or 'nothing'} cannot reach it, as in a cluster, where the kubelet and the Service "
        f"reach a pod at its IP (listen on {HOST_PLACEHOLDER} / $HOST or 0.0.0.0)"
    )
