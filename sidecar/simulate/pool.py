"""Keep-alive connections as client pools hold them (urllib3, httpx, an ingress's upstream pool):
checked before reuse, dropped once the server closed them or said `Connection: close`, never
retried. Speaks HTTP/1.1 only; which pod a new connection reaches is the caller's choice."""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import select
from collections.abc import Mapping
from typing import Final, Generic, TypeVar

from sidecar.simulate.client import HOST, MAX_HEAD_BYTES, Failure, Result, classify_status, parse_status

P = TypeVar("P")

MAX_BODY_BYTES: Final = 1024 * 1024  # a bigger answer is not what a rehearsal's app sends


class ClientKind(enum.Enum):
    POOLED = "pooled"  # keep-alive connections, reused (browsers, HTTP client pools, proxies)
    FRESH = "fresh"  # a new connection per request


class BalancerKind(enum.Enum):
    # kube-proxy balances connections, not requests; an established connection stays on its pod
    # after the endpoint is removed (conntrack keeps TCP flows; IPVS leaves them at weight 0):
    # https://kubernetes.io/docs/reference/networking/virtual-ips/
    L4 = "l4"
    # Ingress proxies and meshes pick an endpoint per request over their own per-pod pools, and
    # stop picking a pod once its removal reaches them; what they hold to it stays open.
    L7 = "l7"


@dataclasses.dataclass(eq=False)
class Connection(Generic[P]):
    """One open connection to `pod`; `requests` answered on it so far."""

    pod: P
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    requests: int = 0

    def is_dropped(self) -> bool:
        """urllib3's check before reuse (is_connection_dropped): an idle connection that is
        readable has hit EOF (the server closed it) or holds bytes nobody asked for."""
        if self.writer.is_closing() or self.reader.at_eof():
            return True
        sock = self.writer.get_extra_info("socket")
        if sock is None:
            return True
        try:
            readable, _, _ = select.select([sock.fileno()], [], [], 0)
        except (OSError, ValueError):
            return True
        return bool(readable)

    def close(self) -> None:
        self.writer.close()


class Pool(Generic[P]):
    """Idle connections, the most recently returned reused first, at most `max_idle`: returning
    one more closes the oldest (urllib3 discards past maxsize; nginx `keepalive` evicts the least
    recently used). `opened` counts every connection opened through it."""

    def __init__(self, max_idle: int) -> None:
        self.max_idle = max_idle
        self.opened = 0
        self._idle: list[Connection[P]] = []

    def take(self, pod: P | None = None) -> Connection[P] | None:
        """An idle connection (to `pod`, when given) that passes the check; dropped ones are closed."""
        for connection in reversed(list(self._idle)):
            if pod is not None and connection.pod != pod:
                continue
            self._idle.remove(connection)
            if not connection.is_dropped():
                return connection
            connection.close()
        return None

    def put(self, connection: Connection[P]) -> None:
        self._idle.append(connection)
        if len(self._idle) > self.max_idle:
            self._idle.pop(0).close()

    def close(self) -> None:
        for connection in self._idle:
            connection.close()
        self._idle.clear()


async def open_to(pod: P, port: int, pool: Pool[P], host: str = HOST) -> Connection[P]:
    """A connection to `host` (the pod's address). Raises OSError (refused and the like); the
    caller bounds it with its timeout."""
    reader, writer = await asyncio.open_connection(host, port, limit=MAX_HEAD_BYTES)
    pool.opened += 1
    return Connection(pod, reader, writer)


async def exchange(
    connection: Connection[P], port: int, path: str, *, timeout_seconds: float, host: str = HOST
) -> tuple[Result, bool]:
    """One keep-alive GET on `connection`, the body read to its end; returns the result and
    whether the connection may carry another request. A failure closes the connection."""
    try:
        async with asyncio.timeout(timeout_seconds):
            connection.writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
            await connection.writer.drain()
            head = await connection.reader.readuntil(b"\r\n\r\n")
            status_line, _, header_block = head.partition(b"\r\n")
            status = parse_status(status_line + b"\r\n")
            headers = parse_headers(header_block)
            has_body_end = await read_body(connection.reader, status, headers)
    except TimeoutError:
        connection.close()
        return Result(None, Failure.TIMEOUT), False
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
        connection.close()  # reset, EOF before a whole response, or garbage
        return Result(None, Failure.RESET), False
    connection.requests += 1
    closes = "close" in headers.get("connection", "").lower() or not status_line.startswith(b"HTTP/1.1")
    return classify_status(status), has_body_end and not closes


def parse_headers(block: bytes) -> dict[str, str]:
    """Header names lower-cased; a repeated header's values joined with commas, as RFC 9110 allows."""
    headers: dict[str, str] = {}
    for line in block.decode("latin-1").split("\r\n"):
        name, colon, value = line.partition(":")
        if colon:
            key = name.strip().lower()
            headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
    return headers


async def read_body(reader: asyncio.StreamReader, status: int, headers: Mapping[str, str]) -> bool:
    """Read the body to its end; False when only the server's close would end it (no length)."""
    if status < 200 or status in (204, 304):
        return True
    if "chunked" in headers.get("transfer-encoding", "").lower():
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0].strip(), 16)
            if size == 0:
                while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers, then the blank line
                    pass
                return True
            if size > MAX_BODY_BYTES:
                raise ValueError(f"a chunk of {size} bytes")
            await reader.readexactly(size + 2)
    if "content-length" not in headers:
        return False
    length = int(headers["content-length"].split(",")[0])
    if not 0 <= length <= MAX_BODY_BYTES:
        raise ValueError(f"a body of {length} bytes")
    await reader.readexactly(length)
    return True
