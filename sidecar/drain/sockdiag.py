"""sockdiag: the sockets of one local TCP port, dumped by the kernel over NETLINK_SOCK_DIAG, and the
network namespace's TCP counters from /proc/net/snmp. Unprivileged, and scoped to the network
namespace the sidecar shares with the app. Reads only; what the readings mean is sidecar.drain's.

Kernel references: man 7 sock_diag (the request and reply layout, inet_diag_req_v2 and
inet_diag_msg); include/uapi/linux/inet_diag.h (the filter bytecode, INET_DIAG_BC_S_GE/S_LE);
Documentation/networking/snmp_counter.rst (TcpPassiveOpens). A bytecode filter keeps the dump to
the app port's sockets inside the kernel, where /proc/net/tcp formats every socket as text."""

from __future__ import annotations

import dataclasses
import os
import socket
import struct
from typing import Final

NETLINK_SOCK_DIAG: Final = 4
SOCK_DIAG_BY_FAMILY: Final = 20
NLM_F_REQUEST: Final = 0x01
NLM_F_DUMP: Final = 0x300  # NLM_F_ROOT | NLM_F_MATCH
NLMSG_ERROR: Final = 2
NLMSG_DONE: Final = 3
INET_DIAG_REQ_BYTECODE: Final = 1
INET_DIAG_BC_S_GE: Final = 2
INET_DIAG_BC_S_LE: Final = 3

# TCP states (include/net/tcp_states.h), as the kernel numbers them.
TCP_ESTABLISHED: Final = 1
TCP_SYN_RECV: Final = 3
TCP_TIME_WAIT: Final = 6
TCP_CLOSE: Final = 7
TCP_LISTEN: Final = 10
# Every state a connection to the port passes through once accepted by the kernel: SYN_RECV (a
# request socket), ESTABLISHED, the closing states, and TIME_WAIT (60 s on the side that closed
# first). CLOSE and SYN_SENT never belong to an arrival.
ARRIVAL_STATES: Final = frozenset(range(1, 12)) - {2, TCP_CLOSE, TCP_LISTEN}
ALL_STATES_MASK: Final = sum(1 << state for state in ARRIVAL_STATES | {TCP_LISTEN})

_NLMSGHDR: Final = struct.Struct("=IHHII")
_REQ_V2: Final = struct.Struct("=BBBxI")  # family, protocol, ext, pad, states; then the socket id
_SOCKID_LEN: Final = 48  # sport, dport (big-endian), src[16], dst[16], if, cookie[2]
_DIAG_MSG: Final = struct.Struct("=BBBB")  # family, state, timer, retrans; then the socket id
_DIAG_MSG_TAIL: Final = struct.Struct("=IIIII")  # expires, rqueue, wqueue, uid, inode
_DIAG_MSG_LEN: Final = _DIAG_MSG.size + _SOCKID_LEN + _DIAG_MSG_TAIL.size
_RTATTR: Final = struct.Struct("=HH")
_BC_OP: Final = struct.Struct("=BBH")
SNMP_PATH: Final = "/proc/net/snmp"


class SockDiagError(OSError):
    """The kernel refused the dump (no NETLINK_SOCK_DIAG, no inet_diag module, a policy)."""


@dataclasses.dataclass(frozen=True)
class PortSockets:
    """One dump of a local port: whether something listens, its accept queue, and every
    connection to it by identity (remote address, remote port, local address) with its state."""

    listening: bool
    accept_queue: int
    connections: dict[tuple[str, int, str], int]

    @property
    def established(self) -> frozenset[tuple[str, int, str]]:
        return frozenset(key for key, state in self.connections.items() if state == TCP_ESTABLISHED)


def port_filter(port: int) -> bytes:
    """Bytecode accepting sockets whose local port is `port` (S_GE and S_LE: kernels before 4.17
    have no S_EQ). A jump landing at the end accepts, one past it (len + 4) rejects; see
    inet_diag_bc_run() in net/ipv4/inet_diag.c."""
    return b"".join(
        (
            _BC_OP.pack(INET_DIAG_BC_S_GE, 8, 20),
            _BC_OP.pack(0, 0, port),
            _BC_OP.pack(INET_DIAG_BC_S_LE, 8, 12),
            _BC_OP.pack(0, 0, port),
        )
    )


def dump_request(family: int, port: int | None, sequence: int, states: int = ALL_STATES_MASK) -> bytes:
    """A SOCK_DIAG_BY_FAMILY dump request for TCP sockets of `family` on local port `port` (every
    port when None)."""
    bytecode = b"" if port is None else port_filter(port)
    attribute = b""
    if bytecode:
        attribute = _RTATTR.pack(_RTATTR.size + len(bytecode), INET_DIAG_REQ_BYTECODE) + bytecode
    body = _REQ_V2.pack(family, socket.IPPROTO_TCP, 0, states) + bytes(_SOCKID_LEN) + attribute
    header = _NLMSGHDR.pack(_NLMSGHDR.size + len(body), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, sequence, 0)
    return header + body


def _address(family: int, raw: bytes) -> str:
    # An IPv4 client of a dual-stack listener shows as ::ffff:a.b.c.d; named as IPv4 here, so a
    # probe source (an IPv4 node address) matches either way.
    text = socket.inet_ntop(family, raw[:4] if family == socket.AF_INET else raw[:16])
    return text.removeprefix("::ffff:")


def parse_dump(
    data: bytes, port: int | None, into: dict[tuple[str, int, str], int], listeners: set[int] | None = None
) -> tuple[bool, int, bool]:
    """Parse the netlink messages in `data`, adding connections to `into` and listening ports to
    `listeners`; returns (a listener seen, its accept queue, the dump is complete). Raises
    SockDiagError on an error message."""
    listening, queue, offset = False, 0, 0
    while offset + _NLMSGHDR.size <= len(data):
        length, kind, _, _, _ = _NLMSGHDR.unpack_from(data, offset)
        if length < _NLMSGHDR.size:
            break
        payload = offset + _NLMSGHDR.size
        if kind == NLMSG_DONE:
            return listening, queue, True
        if kind == NLMSG_ERROR:
            errno = -struct.unpack_from("=i", data, payload)[0]
            raise SockDiagError(errno, f"sock_diag dump refused: {os.strerror(errno)}")
        if kind == SOCK_DIAG_BY_FAMILY and length >= _NLMSGHDR.size + _DIAG_MSG_LEN:
            family, state, _, _ = _DIAG_MSG.unpack_from(data, payload)
            sport, dport = struct.unpack_from("!HH", data, payload + 4)
            if state == TCP_LISTEN and listeners is not None:
                listeners.add(sport)
            if sport == port:
                src = _address(family, data[payload + 8 : payload + 24])
                dst = _address(family, data[payload + 24 : payload + 40])
                _, rqueue, _, _, _ = _DIAG_MSG_TAIL.unpack_from(data, payload + 4 + _SOCKID_LEN)
                if state == TCP_LISTEN:
                    listening, queue = True, queue + rqueue
                else:
                    into[(dst, dport, src)] = state
        offset += (length + 3) & ~3
    return listening, queue, False


class SockDiag:
    """A NETLINK_SOCK_DIAG socket; `dump(port)` takes both families. Raises SockDiagError (an
    OSError) when the kernel offers no such socket or refuses the dump."""

    def __init__(self) -> None:
        try:
            self._socket = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC, NETLINK_SOCK_DIAG)
        except OSError as exc:
            raise SockDiagError(exc.errno, f"no sock_diag netlink socket: {exc.strerror}") from None
        self._sequence = 0

    def dump(self, port: int, *, listener_only: bool = False) -> PortSockets:
        """The port's sockets in both families. `listener_only` asks for the listener alone: the
        kernel then skips its established-socket table, which it otherwise walks whole (about
        1.3 ms a family on a host with 262,144 buckets, measured here; a few microseconds so)."""
        connections: dict[tuple[str, int, str], int] = {}
        listening, queue = False, 0
        states = 1 << TCP_LISTEN if listener_only else ALL_STATES_MASK
        for family in (socket.AF_INET, socket.AF_INET6):
            self._sequence += 1
            self._socket.send(dump_request(family, port, self._sequence, states))
            while True:
                family_listening, family_queue, done = parse_dump(self._socket.recv(65536), port, connections)
                listening, queue = listening or family_listening, queue + family_queue
                if done:
                    break
        return PortSockets(listening, queue, connections)

    def listening_ports(self) -> set[int]:
        """Every TCP port something listens on in this network namespace (the listening table
        only: cheap)."""
        ports: set[int] = set()
        for family in (socket.AF_INET, socket.AF_INET6):
            self._sequence += 1
            self._socket.send(dump_request(family, None, self._sequence, 1 << TCP_LISTEN))
            while not parse_dump(self._socket.recv(65536), None, {}, ports)[2]:
                pass
        return ports

    def close(self) -> None:
        self._socket.close()


def parse_tcp_counters(text: str) -> tuple[int, int] | None:
    """(TcpPassiveOpens, TcpCurrEstab) from /proc/net/snmp: every connection any listener of the
    network namespace accepted since it was created, and the connections established now
    (Documentation/networking/snmp_counter.rst). While neither moves, no connection to the app
    port has opened or closed, and its sockets need not be dumped again."""
    rows = [line.split() for line in text.splitlines() if line.startswith("Tcp:")]
    if len(rows) < 2 or not {"PassiveOpens", "CurrEstab"} <= set(rows[0]):
        return None
    return int(rows[1][rows[0].index("PassiveOpens")]), int(rows[1][rows[0].index("CurrEstab")])


def read_tcp_counters(path: str = SNMP_PATH) -> tuple[int, int] | None:
    try:
        with open(path) as stream:
            return parse_tcp_counters(stream.read())
    except OSError:
        return None
