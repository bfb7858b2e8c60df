from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from sidecar.drain.port_reader import (
    PortSnapshot,
    decode_table_address,
    parse_port_sockets,
    parse_tcp_table,
    read_port_snapshot,
)

# Two listeners (8080 on 0.0.0.0, 9180), two connections to 8080, one client connection *from* 8080.
TCP_TABLE = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 1 1 0000000000000000 100 0 0 10 0
   1: 00000000:23DC 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 2 1 0000000000000000 100 0 0 10 0
   2: 0100007F:1F90 0100007F:D431 01 00000000:00000000 00:00000000 00000000  1000        0 3 1 0000000000000000 20 4 30 10 -1
   3: 0100007F:1F90 0100007F:D432 01 00000000:00000000 00:00000000 00000000  1000        0 4 1 0000000000000000 20 4 30 10 -1
   4: 0100007F:1F90 0100007F:D433 06 00000000:00000000 00:00000000 00000000  1000        0 5 1 0000000000000000 20 4 30 10 -1
"""  # noqa: E501


def test_port_reader_table_counts_listener_and_established_connections_to_the_port() -> None:
    listening, established = parse_tcp_table(TCP_TABLE, 8080)
    assert listening
    assert established == {"0100007F:D431", "0100007F:D432"}  # TIME_WAIT (06) is not a connection


def test_port_reader_other_port_sees_nothing_of_8080() -> None:
    assert parse_tcp_table(TCP_TABLE, 9180) == (True, set())
    assert parse_tcp_table(TCP_TABLE, 7000) == (False, set())


def test_port_reader_missing_table_is_skipped(tmp_path: Path) -> None:
    table = tmp_path / "tcp"
    table.write_text(TCP_TABLE)
    snapshot = read_port_snapshot(8080, (str(table), str(tmp_path / "tcp6")))
    assert snapshot == PortSnapshot(True, frozenset({"127.0.0.1:54321", "127.0.0.1:54322"}))


def test_port_reader_table_sockets_name_every_connection_in_every_state() -> None:
    found = parse_port_sockets(TCP_TABLE, 8080)
    assert found.listening
    assert found.connections == {
        ("127.0.0.1", 0xD431, "127.0.0.1"): 1,
        ("127.0.0.1", 0xD432, "127.0.0.1"): 1,
        ("127.0.0.1", 0xD433, "127.0.0.1"): 6,  # TIME_WAIT: an arrival all the same
    }


@pytest.mark.parametrize(
    ("hex_address", "text"),
    [
        pytest.param("0100007F", "127.0.0.1", id="ipv4-loopback"),
        pytest.param("0300007F", "127.0.0.3", id="ipv4-pod-address"),
        pytest.param("00000000", "0.0.0.0", id="ipv4-any"),
        pytest.param("00000000000000000000000000000000", "::", id="ipv6-any"),
        pytest.param("0000000000000000FFFF00000100007F", "127.0.0.1", id="ipv4-mapped"),
        pytest.param("00000000000000000000000001000000", "::1", id="ipv6-loopback"),
        pytest.param("B80D0120000000000000000001000000", "2001:db8::1", id="ipv6-global"),
    ],
)
def test_port_reader_table_address_decodes_ipv4_ipv6_and_mapped_ipv4(hex_address: str, text: str) -> None:
    assert decode_table_address(hex_address) == text


@pytest.mark.anyio
async def test_port_reader_real_kernel_table_shows_a_real_listener_and_connection() -> None:
    accepted: list[asyncio.StreamWriter] = []
    accepted_one = asyncio.Event()

    def accept(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)
        accepted_one.set()

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    assert read_port_snapshot(port).listening
    with socket.create_connection(("127.0.0.1", port)):
        await asyncio.wait_for(accepted_one.wait(), 5)
        assert len(read_port_snapshot(port).established) == 1
    for writer in accepted:
        writer.close()
    server.close()
    await server.wait_closed()
