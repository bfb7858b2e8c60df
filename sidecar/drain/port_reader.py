"""port_reader: the app port's sockets as one read: a NETLINK_SOCK_DIAG dump with an in-kernel port
filter (sidecar.drain.sockdiag), or /proc/net/tcp{,6} parsed here where the kernel refuses it (the
one reader of those tables: simulate's listener check uses it too). It reads and decodes; what the
sockets mean (drain end, arrivals) is sidecar.drain.connections'."""

from __future__ import annotations

import dataclasses
import logging
import socket
from collections.abc import Iterable, Iterator
from typing import Final

from sidecar.drain.sockdiag import TCP_LISTEN, PortSockets, SockDiag, SockDiagError
from sidecar.logs import LOGGER_NAME

logger = logging.getLogger(LOGGER_NAME)

TCP_TABLES: Final = ("/proc/net/tcp", "/proc/net/tcp6")
STATE_ESTABLISHED: Final = "01"
STATE_LISTEN: Final = "0A"


@dataclasses.dataclass(frozen=True)
class PortSnapshot:
    listening: bool
    established: frozenset[str]  # the remote "address:port" of each connection to the port


def parse_tcp_table(text: str, port: int) -> tuple[bool, set[str]]:
    """(is something listening on `port`, remote endpoints of established connections to it)."""
    listening, established = False, set()
    for _local, remote, state in _port_rows(text, port):
        if state == STATE_LISTEN:
            listening = True
        elif state == STATE_ESTABLISHED:
            established.add(remote)
    return listening, established


def table_texts(tables: Iterable[str] = TCP_TABLES) -> Iterator[str]:
    """The text of each table that exists (no tcp6 in a kernel without IPv6)."""
    for table in tables:
        try:
            with open(table) as stream:
                text = stream.read()
        except FileNotFoundError:
            continue
        yield text


def table_rows(text: str) -> Iterator[tuple[str, str, str]]:
    """Each socket of a /proc/net/tcp{,6} table: (local, remote, state), in the table's hex."""
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 4:
            yield fields[1], fields[2], fields[3]


def _port_rows(text: str, port: int) -> Iterator[tuple[str, str, str]]:
    return (row for row in table_rows(text) if int(row[0].rpartition(":")[2], 16) == port)


def decode_table_address(hex_address: str) -> str:
    """An address as /proc/net/tcp{,6} writes it (32-bit words in host order, little-endian here),
    as text; an IPv4-mapped IPv6 address in its IPv4 form."""
    raw = bytes.fromhex(hex_address)
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    family = socket.AF_INET if len(words) == 4 else socket.AF_INET6
    return socket.inet_ntop(family, words).removeprefix("::ffff:")


def decode_table_endpoint(hex_endpoint: str) -> tuple[str, int]:
    """A table's "ADDRESS:PORT" (hex) as (address text, port)."""
    address, _, port = hex_endpoint.rpartition(":")
    return decode_table_address(address), int(port, 16)


def parse_port_sockets(text: str, port: int) -> PortSockets:
    """The sockets of `port` in a /proc/net/tcp{,6} table, as sock_diag would give them."""
    listening, connections = False, {}
    for local, remote, state in _port_rows(text, port):
        if int(state, 16) == TCP_LISTEN:
            listening = True
            continue
        address, remote_port = decode_table_endpoint(remote)
        connections[(address, remote_port, decode_table_endpoint(local)[0])] = int(state, 16)
    return PortSockets(listening, 0, connections)


def read_port_sockets(port: int, tables: Iterable[str] = TCP_TABLES) -> PortSockets:
    """The fallback reader: every socket of the namespace formatted as text, then filtered here."""
    listening, connections = False, {}
    for text in table_texts(tables):
        found = parse_port_sockets(text, port)
        listening = listening or found.listening
        connections.update(found.connections)
    return PortSockets(listening, 0, connections)


def read_port_snapshot(port: int, tables: Iterable[str] = TCP_TABLES) -> PortSnapshot:
    found = read_port_sockets(port, tables)
    return PortSnapshot(found.listening, frozenset(f"{addr}:{rport}" for addr, rport, _ in found.established))


class PortReader:
    """Dumps the port over sock_diag, or reads /proc/net/tcp{,6} when the kernel refuses
    sock_diag (`fallback` then says why). The netlink socket is opened at the first read, so
    building the reader holds nothing. Raises OSError when neither can be read."""

    def __init__(self, port: int, tables: Iterable[str] | None = None) -> None:
        self.port = port
        self.tables = tuple(tables) if tables is not None else None
        self.fallback: str | None = None
        self._diag: SockDiag | None = None

    def _dumper(self) -> SockDiag | None:
        if self._diag is None and self.fallback is None and self.tables is None:
            try:
                self._diag = SockDiag()
            except SockDiagError as exc:
                self.fallback = str(exc)
                logger.warning("counting connections from /proc instead", extra={"fields": {"reason": exc}})
        return self._diag

    def read(self, *, listener_only: bool = False) -> PortSockets:
        diag = self._dumper()
        if diag is not None:
            try:
                return diag.dump(self.port, listener_only=listener_only)
            except OSError as exc:
                self.fallback = f"sock_diag failed: {exc}"
                self.close()
                logger.warning("counting connections from /proc instead", extra={"fields": {"reason": self.fallback}})
        return read_port_sockets(self.port, self.tables or TCP_TABLES)

    def listening_ports(self) -> set[int] | None:
        """Every listening port of the namespace, or None when only /proc is read."""
        diag = self._dumper()
        if diag is None:
            return None
        try:
            return diag.listening_ports()
        except OSError:
            return None

    def close(self) -> None:
        if self._diag is not None:
            self._diag.close()
            self._diag = None
