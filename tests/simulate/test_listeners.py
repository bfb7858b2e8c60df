"""Which addresses listen on a port: a listener on 127.0.0.1 only is unreachable at a pod's own
address, one on the pod's address or a wildcard is not."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest

from sidecar.simulate import listeners
from sidecar.simulate.listeners import listening_addresses, unreachable_listeners
from sidecar.simulate.podspec import APP_PORT
from tests.simulate.loopback_server import closed_port

# A tcp6 table: 8080 listened on at the IPv4-mapped 127.0.0.3 and at ::, 9090 at ::1; one connection.
TCP6_TABLE = """\
  sl  local_address                         remote_address                        st tx_queue rx_queue
   0: 0000000000000000FFFF00000300007F:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000
   1: 00000000000000000000000000000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000
   2: 00000000000000000000000001000000:2382 00000000000000000000000000000000:0000 0A 00000000:00000000
   3: 00000000000000000000000001000000:2382 00000000000000000000000001000000:D431 01 00000000:00000000
"""


def test_listening_addresses_decode_the_tables_ipv6_and_mapped_ipv4_listeners(tmp_path: Path) -> None:
    (tmp_path / "tcp6").write_text(TCP6_TABLE)
    tables = (str(tmp_path / "tcp"), str(tmp_path / "tcp6"))  # no tcp: skipped
    assert listening_addresses(8080, tables) == {"127.0.0.3", "::"}
    assert listening_addresses(9090, tables) == {"::1"}
    assert listening_addresses(7000, tables) == set()


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
