"""Hostile clients of the admin port, for tests/faults and the faults benchmark: connections held
open in every state a client can hold one, a flood of requests, a huge header, and a fresh-connection
request that measures how long its answer took. Loopback only; every loop is bounded."""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import re
import socket
import threading
import time
from collections.abc import Iterator
from multiprocessing.sharedctypes import Synchronized
from multiprocessing.synchronize import Event as EventType
from types import TracebackType

# Each hostile state: the bytes that put a connection there, and what trickles after them (a
# byte every TRICKLE_SECONDS keeps a naive per-read timeout from ever firing).
HOSTILE_OPENERS: dict[str, tuple[bytes, bytes | None]] = {
    "idle": (b"", None),
    "slow headers": (b"GET /livez HTTP/1.1\r\nHost: x\r\nX-Slow: ", b"a"),
    "slow body": (b"POST /drain HTTP/1.1\r\nHost: x\r\nContent-Length: 4000\r\n\r\n{", b" "),
    "stalled body after its response": (b"GET /livez HTTP/1.1\r\nHost: x\r\nContent-Length: 4000\r\n\r\n", b" "),
    "kept alive after a response": (b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n", None),
}
TRICKLE_SECONDS = 0.5
STATUS_LINE = re.compile(rb"HTTP/1\.[01] (\d{3})")


def fresh_request(
    port: int,
    method: str,
    path: str,
    *,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    timeout: float = 2.0,
) -> tuple[int, float]:
    """One request on a new connection, read until the server closes it: (status, seconds);
    status 0 when no status line came within `timeout` (refused, reset, or silent)."""
    lines = [f"{method} {path} HTTP/1.1", "Host: sidecar", "Connection: close", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode() + body
    started = time.monotonic()
    data = b""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.sendall(request)
            while b"\r\n" not in data:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                data += chunk
    except OSError:
        pass
    seconds = time.monotonic() - started
    match = STATUS_LINE.match(data)
    return (int(match.group(1)) if match else 0), seconds


@contextlib.contextmanager
def hold_connections(port: int, opener: tuple[bytes, bytes | None], count: int) -> Iterator[int]:
    """Open `count` connections, put each in the hostile state, trickle while held; yields how many
    were opened. The server may close some (that is the point of a limit); they are not reopened."""
    prefix, trickle = opener
    held: list[socket.socket] = []
    stop = threading.Event()
    try:
        for _ in range(count):
            try:
                sock = socket.create_connection(("127.0.0.1", port), timeout=2)
            except OSError:
                break
            if prefix:
                with contextlib.suppress(OSError):
                    sock.sendall(prefix)
            sock.setblocking(False)
            held.append(sock)

        def trickle_bytes() -> None:
            while trickle is not None and not stop.wait(TRICKLE_SECONDS):
                for sock in held:
                    with contextlib.suppress(OSError):
                        sock.send(trickle)

        trickler = threading.Thread(target=trickle_bytes, daemon=True)
        trickler.start()
        yield len(held)
    finally:
        stop.set()
        for sock in held:
            sock.close()


class RequestFlood:
    """`connections` keep-alive clients GETting `path` (/metrics by default) back to back, from a
    process of their own: in a thread here they would hold the GIL against the probes measured."""

    def __init__(self, port: int, connections: int, path: str = "/metrics") -> None:
        self.port = port
        self.connections = connections
        self.seconds = 0.0  # how long the flood ran, from the moment every client was going
        self.started = 0.0
        context = multiprocessing.get_context("spawn")
        self._answered = context.Value("q", 0)
        self._stop = context.Event()
        self._process = context.Process(
            target=flood, args=(port, path, connections, self._answered, self._stop), name="request-flood", daemon=True
        )

    @property
    def requests(self) -> int:
        """Requests answered so far."""
        return int(self._answered.value)

    def __enter__(self) -> RequestFlood:
        self._process.start()
        deadline = time.monotonic() + 20
        while self.requests < self.connections and time.monotonic() < deadline:  # every client is going
            time.sleep(0.01)
        self.started = time.monotonic()
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.seconds = time.monotonic() - self.started
        self._stop.set()
        self._process.join(timeout=10)
        if self._process.is_alive():
            self._process.kill()
            self._process.join(timeout=10)


def flood(port: int, path: str, connections: int, answered: Synchronized[int], stop: EventType) -> None:
    """The flood's process: `connections` clients of `path` until `stop` is set."""
    request = f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode()

    async def client() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while not stop.is_set():
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                length = re.search(rb"content-length: (\d+)", head, re.IGNORECASE)
                if length is None:
                    return
                await reader.readexactly(int(length.group(1)))
                with answered.get_lock():
                    answered.value += 1
        finally:
            writer.close()

    async def run() -> None:
        await asyncio.gather(*(client() for _ in range(connections)), return_exceptions=True)

    asyncio.run(run())


def send_huge_header(port: int, size: int, timeout: float = 30.0) -> str:
    """A request with one header of `size` bytes; the status the server answered, or how it ended."""
    chunk = b"a" * (1024 * 1024)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            try:
                sock.sendall(b"GET /livez HTTP/1.1\r\nHost: x\r\nX-Big: ")
                for _ in range(size // len(chunk)):
                    sock.sendall(chunk)
                sock.sendall(b"\r\n\r\n")
            except OSError:
                pass  # the server stopped reading: its answer, if any, is already in our buffer
            data = sock.recv(4096)
    except OSError as exc:
        return type(exc).__name__
    match = STATUS_LINE.match(data)
    return match.group(1).decode() if match else "closed"


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident set (VmHWM) so far."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")
