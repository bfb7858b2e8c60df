from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from sidecar.drain.sockdiag import TCP_ESTABLISHED, TCP_TIME_WAIT, SockDiag, parse_tcp_counters, read_tcp_counters

SNMP = """\
Ip: Forwarding DefaultTTL
Ip: 1 64
Tcp: RtoAlgorithm RtoMin RtoMax MaxConn ActiveOpens PassiveOpens AttemptFails EstabResets CurrEstab InSegs
Tcp: 1 200 120000 -1 12 345 0 0 7 1000
"""


@pytest.fixture
def diag() -> Iterator[SockDiag]:
    dumper = SockDiag()
    yield dumper
    dumper.close()


def listen() -> socket.socket:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    return listener


def test_tcp_counters_are_passive_opens_and_established() -> None:
    assert parse_tcp_counters(SNMP) == (345, 7)
    assert parse_tcp_counters("Tcp: nothing\n") is None
    assert read_tcp_counters("/nonexistent/snmp") is None
    assert read_tcp_counters() is not None


def test_sockdiag_dump_sees_the_listener_a_connection_and_its_time_wait(diag: SockDiag) -> None:
    with listen() as listener, listen() as other:
        port = listener.getsockname()[1]
        assert diag.dump(port).listening
        assert diag.dump(port).connections == {}
        client = socket.create_connection(("127.0.0.1", port))
        served, _ = listener.accept()
        socket.create_connection(("127.0.0.1", other.getsockname()[1])).close()  # another port: not ours
        identity = ("127.0.0.1", client.getsockname()[1], "127.0.0.1")
        assert diag.dump(port).connections == {identity: TCP_ESTABLISHED}
        served.close()  # the server closes first: its side keeps TIME_WAIT
        client.close()
        assert diag.dump(port).connections == {identity: TCP_TIME_WAIT}
        assert diag.dump(port, listener_only=True).connections == {}
    assert not diag.dump(port).listening


def test_sockdiag_listening_ports_name_every_listener(diag: SockDiag) -> None:
    with listen() as first, listen() as second:
        ports = diag.listening_ports()
        assert {first.getsockname()[1], second.getsockname()[1]} <= ports
