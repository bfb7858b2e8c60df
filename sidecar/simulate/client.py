"""One HTTP/1.1 GET on a fresh loopback connection, and what became of it: a status, or the kind
of failure a client behind kube-proxy would see. Used by the load generator, the probes and the
preStop hooks. Raises nothing for network failures: they are results here."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
from collections.abc import Sequence

HOST = "127.0.0.1"  # the default; a simulated pod is reached at its own address (its pod IP)
MAX_HEAD_BYTES = 16 * 1024


class Failure(enum.Enum):
    REFUSED = "refused"  # nothing listening: the port closed before the endpoint was removed
    RESET = "reset"  # accepted, then closed or reset before a whole response
    SERVER_ERROR = "5xx"
    TIMEOUT = "timeout"


@dataclasses.dataclass(frozen=True)
class Result:
    status: int | None  # None when no response came
    failure: Failure | None

    @property
    def is_ok(self) -> bool:
        return self.failure is None

    def describe(self) -> str:
        """The status code, or the kind of failure when no response came."""
        if self.status is not None:
            return str(self.status)
        return self.failure.value if self.failure is not None else "no response"


def classify_status(status: int) -> Result:
    return Result(status, Failure.SERVER_ERROR if status >= 500 else None)


async def http_get(
    port: int,
    path: str,
    *,
    timeout_seconds: float,
    headers: Sequence[tuple[str, str]] = (),
    host: str = HOST,
) -> Result:
    """GET http://{host}:{port}{path} with `Connection: close`; the whole exchange, connect
    included, within `timeout_seconds`. The body is not read: the status line is the answer."""
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(timeout_seconds):
            reader, writer = await asyncio.open_connection(host, port, limit=MAX_HEAD_BYTES)
            extra = "".join(f"{name}: {value}\r\n" for name, value in headers)
            writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n{extra}Connection: close\r\n\r\n".encode())
            await writer.drain()
            status_line = await reader.readuntil(b"\r\n")
            return classify_status(parse_status(status_line))
    except TimeoutError:
        return Result(None, Failure.TIMEOUT)
    except ConnectionRefusedError:
        return Result(None, Failure.REFUSED)
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
        # Reset, broken pipe, EOF before the status line, or garbage instead of one.
        return Result(None, Failure.RESET)
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


def parse_status(status_line: bytes) -> int:
    """b'HTTP/1.1 503 Service Unavailable\\r\\n' -> 503; ValueError for anything else."""
    version, _, rest = status_line.partition(b" ")
    if not version.startswith(b"HTTP/"):
        raise ValueError(f"not an HTTP status line: {status_line[:40]!r}")
    code, after = rest[:3], rest[3:4]
    if len(code) != 3 or not code.isdigit() or after not in (b"", b" ", b"\r"):
        raise ValueError(f"no status code in {status_line[:40]!r}")
    return int(code)


async def tcp_connect(port: int, *, timeout_seconds: float, host: str = HOST) -> bool:
    """A tcpSocket probe: does anything accept a connection on the port at `host`?"""
    try:
        async with asyncio.timeout(timeout_seconds):
            _, writer = await asyncio.open_connection(host, port)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True
