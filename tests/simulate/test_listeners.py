"""Which addresses listen on a port: a listener on 127.0.0.1 only is unreachable at a pod's own
address, one on the pod's address or a wildcard is not."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from sidecar.simulate import listeners
from sidecar.simulate.listeners import decode_address, listening_addresses, unreachable_listeners
from sidecar.simulate.podspec import APP_PORT
from tests.simulate.loopback_server import closed_port


@pytest.mark.parametrize(
    ("hex_address", "text"),
    [
        pytest.param("0100007F", "127.0.0.1", id="ipv4-loopback"),
        pytest.param("0300007F", "127.0.0.3", id="ipv4-pod-address"),
        pytest.param("00000000", "0.0.0.0", id="ipv4-any"),
        pytest.param("00000000000000000000000000000000", "::", id="ipv6-any"),
        pytest.param("0000000000000000FFFF00000100007F", "127.0.0.1", id="ipv4-mapped"),
        pytest.param("00000000000000000000000001000000", "::1", id="ipv6-loopback"),
    ],
)
def test_decode_address_reads_proc_net_tcp(hex_address: str, text: str) -> None:
    assert decode_address(hex_address) == text


async def _nothing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.close()


@pytest.mark.anyio
async def test_unreachable_listeners_names_a_port_listened_on_at_127_0_0_1_only() -> None:
    server = await asyncio.start_server(_nothing, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        assert listening_addresses(port) == {"127.0.0.1"}
        assert unreachable_listeners({APP_PORT: port}, "127.0.0.3") == {APP_PORT: "127.0.0.1"}
        assert unreachable_listeners({APP_PORT: port}, "127.0.0.1") == {}
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.anyio
async def test_unreachable_listeners_passes_the_pod_address_and_a_port_nobody_listens_on() -> None:
    server = await asyncio.start_server(_nothing, "127.0.0.3", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        assert unreachable_listeners({APP_PORT: port}, "127.0.0.3") == {}
        assert unreachable_listeners({APP_PORT: closed_port()}, "127.0.0.3") == {}  # still starting
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.anyio
async def test_listener_table_is_read_once_per_period_off_the_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    reads: list[str] = []

    def slow_table() -> dict[int, set[str]]:
        reads.append(threading.current_thread().name)
        time.sleep(0.05)  # a costly read of a busy machine's tables
        return {8080: {"127.0.0.1"}}

    monkeypatch.setattr(listeners, "listening_table", slow_table)
    table = listeners.ListenerTable(max_age_seconds=0.01)
    assert await table.current() == {8080: {"127.0.0.1"}}
    assert await table.current() == {8080: {"127.0.0.1"}}  # 10 x 50 ms not yet over: not read again
    assert len(reads) == 1
    assert reads[0] != threading.current_thread().name  # in a thread: the loop was not held
