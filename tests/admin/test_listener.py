"""The accept loop out of descriptors, for real: a server process under a low RLIMIT_NOFILE whose
connection cap is set above what its descriptors hold, so accept() itself fails with EMFILE."""

from __future__ import annotations

import ast
import asyncio
import contextlib
import itertools
import json
import select
import signal
import socket
import subprocess
import sys
import time

import pytest

from sidecar.admin.listener import ACCEPT_BATCH, SETUP_BATCH, AdminListener
from sidecar.admin.protocol import AdminConnections
from tests.e2e.sidecar_process import wait_until
from tests.faults.hostile import fresh_request

FD_LIMIT = 64
SERVER = """
import asyncio, sys
from sidecar.admin.protocol import AdminConnections
from sidecar.admin.server import AdminServer, bind_admin_socket, build_config
from sidecar.logs import configure_logging

answered = 0

async def app(scope, receive, send):
    if scope["path"] == "/hold":
        while (await receive())["type"] != "http.disconnect":  # owed an answer until it goes
            pass
        return
    global answered
    answered += 1  # the body is the answer's place in the server's order: the client cannot see it
    body = b"%06d" % answered
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"6")]})
    await send({"type": "http.response.body", "body": body})

async def main():
    sock = bind_admin_socket("127.0.0.1", 0)
    connections = AdminConnections(max_connections=100_000)  # more than the descriptors hold
    server = AdminServer(build_config(app, connections))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    await server.listening.wait()
    print(sock.getsockname()[1], flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    print(dict(connections.closed), flush=True)
    server.stop()
    await task

configure_logging("json", "info")
asyncio.run(main())
"""


def open_held(port: int, count: int, request: bytes) -> list[socket.socket]:
    held = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=2)
        sock.sendall(request)
        held.append(sock)
    return held


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "request_bytes",
    [
        pytest.param(b"", id="idle connections"),
        pytest.param(b"GET /hold HTTP/1.1\r\nHost: x\r\n\r\n", id="connections owed an answer"),
    ],
)
def test_listener_out_of_descriptors_makes_room_at_once_and_logs_one_line_a_second(request_bytes: bytes) -> None:
    server = subprocess.Popen(
        ["prlimit", f"--nofile={FD_LIMIT}:{FD_LIMIT}", "--", sys.executable, "-c", SERVER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        assert server.stdin is not None
        port = int(server.stdout.readline())
        held = open_held(port, 3 * FD_LIMIT, request_bytes)
        started = time.monotonic()
        fresh_request(port, "GET", "/", timeout=5)  # answered (evicting) or refused, not paused
        assert time.monotonic() - started < 0.5
        for sock in held:
            sock.close()
        # Once the server has seen the closes its descriptors are free again.
        wait_until(lambda: fresh_request(port, "GET", "/", timeout=5)[0] == 200, 5, what="an answer")
        server.stdin.write("\n")
        server.stdin.flush()
        closed = ast.literal_eval(server.stdout.readline())
        assert server.wait(timeout=10) == 0
    finally:
        server.kill()
        stderr = server.communicate()[1]
    assert closed["evicted"] + closed["refused"] > 0, "accept() never ran out of descriptors"
    assert "Traceback" not in stderr
    assert "out of system resource" not in stderr
    lines = [json.loads(line) for line in stderr.splitlines()]
    refusals = [line for line in lines if line["msg"] == "admin connections refused"]
    # The first refusal is logged at the next turn; each line counts the refusals since the one
    # before, and those of the last second may go unlogged at exit.
    assert bool(refusals) == (closed["refused"] > 0), (refusals, closed)
    assert sum(line["count"] for line in refusals) <= closed["refused"]
    assert all(later["ts"] - earlier["ts"] >= 0.99 for earlier, later in itertools.pairwise(refusals))


@pytest.mark.timeout(60)
def answer_place(sock: socket.socket) -> int:
    """The body of the server's answer on `sock`: its place in the server's order."""
    answer = b""
    while len(answer.partition(b"\r\n\r\n")[2]) < 6:
        chunk = sock.recv(4096)
        assert chunk, f"closed after {answer!r}"
        answer += chunk
    return int(answer.partition(b"\r\n\r\n")[2])


def test_listener_sets_the_newest_connection_up_first_so_a_probe_in_a_burst_is_not_last() -> None:
    """The kernel's accept queue is first in, first out: the server, stopped while a burst queues,
    must not answer the probe sent last only after every connection queued ahead of it. (200:
    fewer than one accept batch, so all are accepted in the turn after SIGCONT.)"""
    server = subprocess.Popen([sys.executable, "-c", SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        server.send_signal(signal.SIGSTOP)
        burst = open_held(port, 200, b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n")
        probe = open_held(port, 1, b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")[0]
        server.send_signal(signal.SIGCONT)
        # The order is the server's, from each body: several answers that arrive between two
        # select() calls would be listed in the order of `pending`, the burst's.
        place: dict[socket.socket, int] = {}
        pending = [*burst, probe]
        while pending:
            readable, _, _ = select.select(pending, [], [], 5)
            assert readable, "no answer within 5 s"
            for sock in readable:
                place[sock] = answer_place(sock)
                pending.remove(sock)
        assert place[probe] <= SETUP_BATCH, f"the probe was answered {place[probe]}th"
        assert place[burst[0]] > len(burst) - SETUP_BATCH, "the oldest connection was answered early"
        for sock in place:
            sock.close()
    finally:
        server.kill()
        server.communicate()


class Recorded(asyncio.Protocol):
    """Counts the connections set up; `all_made` is set at the `expected`th."""

    made: list[Recorded] = []  # noqa: RUF012 - shared by the one test below
    expected = 0
    all_made: asyncio.Event

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        Recorded.made.append(self)
        self.transport = transport
        if len(Recorded.made) == Recorded.expected:
            Recorded.all_made.set()

    def close(self) -> None:
        self.transport.close()


@pytest.mark.anyio
async def test_listener_sets_up_a_queue_of_exactly_one_accept_batch() -> None:
    # A full batch accepted and the kernel's queue then empty: no readiness wakes the reader again,
    # so the listener itself must go on to set up what it accepted.
    server = socket.create_server(("127.0.0.1", 0), backlog=ACCEPT_BATCH + 16)
    server.setblocking(False)
    clients = [socket.create_connection(server.getsockname(), timeout=2) for _ in range(ACCEPT_BATCH)]
    Recorded.made, Recorded.expected, Recorded.all_made = [], ACCEPT_BATCH, asyncio.Event()
    listener = AdminListener(server, Recorded, AdminConnections())
    listener.start()
    try:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(Recorded.all_made.wait(), 5)
        assert len(Recorded.made) == ACCEPT_BATCH
    finally:
        listener.close()
        for protocol in Recorded.made:
            protocol.close()
        for client in clients:
            client.close()
