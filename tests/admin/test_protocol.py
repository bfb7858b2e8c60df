"""The bounded HTTP protocol of the admin port: a timeout in every connection state, byte caps,
and a connection cap kept by eviction; the uvicorn hooks it relies on."""

from __future__ import annotations

import asyncio
import inspect
import re
import resource

import pytest
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from sidecar.admin import protocol as protocol_module
from sidecar.admin.probes import ProbeFastPath
from sidecar.admin.protocol import AdminConnections, connection_cap, raise_fd_limit
from sidecar.admin.server import AdminServer, bind_admin_socket, build_config


def test_protocol_uvicorn_protocol_still_has_the_hooks_the_bounded_protocol_uses() -> None:
    hooks = ("connection_made", "connection_lost", "data_received", "on_message_begin", "on_url", "on_header")
    hooks += ("on_headers_complete", "on_body", "on_message_complete", "on_response_complete")
    for name in (*hooks, "_unset_keepalive_if_required"):
        assert callable(getattr(HttpToolsProtocol, name)), name
    source = inspect.getsource(HttpToolsProtocol)
    attributes = ("self.timeout_keep_alive_task", "self.cycle", "self.headers", "self.parser", "self.flow")
    # The probe fast path completes a response as on_response_complete does.
    attributes += ("self.pipeline", "self.timeout_keep_alive_handler", "self.server_state.total_requests += 1")
    for attribute in attributes:
        assert attribute in source, attribute
    cycle = inspect.getsource(RequestResponseCycle)
    for attribute in ("self.more_body", "self.response_started", "self.response_complete", "self.disconnected"):
        assert attribute in cycle, attribute
    # The server's own limit answers 503 to probes; ours must stay the only one.
    assert build_config(PlainTextResponse("ok")).limit_concurrency is None


async def read_body_then_ok(scope: Scope, receive: Receive, send: Send) -> None:
    """An app that reads the whole body before it answers, as /drain does."""
    while (await receive()).get("more_body"):
        pass
    await PlainTextResponse("ok")(scope, receive, send)


async def open_server(connections: AdminConnections | None = None) -> tuple[AdminServer, asyncio.Task[None], int]:
    sock = bind_admin_socket("127.0.0.1", 0)
    server = AdminServer(build_config(read_body_then_ok, connections))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    await asyncio.wait_for(server.listening.wait(), 5)
    return server, task, sock.getsockname()[1]


async def request(port: int, data: bytes) -> bytes:
    """Send `data` on a new connection; everything the server sent until it closed."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    try:
        return await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()


HELD_STATES = [
    pytest.param(b"", id="idle"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ", id="slow-headers"),
    pytest.param(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{", id="stalled-body"),
]


@pytest.mark.anyio
@pytest.mark.parametrize("sent", HELD_STATES)
async def test_protocol_closes_a_connection_that_does_not_finish_its_request_in_time(
    monkeypatch: pytest.MonkeyPatch, sent: bytes
) -> None:
    monkeypatch.setattr(protocol_module, "REQUEST_TIMEOUT_SECONDS", 0.2)
    connections = AdminConnections()
    server, task, port = await open_server(connections)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(sent)
    assert await asyncio.wait_for(reader.read(), 3) == b"", "the server should have closed the connection"
    writer.close()
    assert connections.closed["request_timeout"] == 1
    # A prompt client on the same server is unaffected.
    assert (await request(port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")).startswith(b"HTTP/1.1 200")
    server.stop()
    await asyncio.wait_for(task, 2)


@pytest.mark.anyio
async def test_protocol_closes_a_connection_whose_body_still_comes_after_its_answer() -> None:
    connections = AdminConnections()
    sock = bind_admin_socket("127.0.0.1", 0)
    server = AdminServer(build_config(PlainTextResponse("ok"), connections))  # answers without reading
    task = asyncio.create_task(server.serve(sockets=[sock]))
    await asyncio.wait_for(server.listening.wait(), 5)
    reader, writer = await asyncio.open_connection("127.0.0.1", sock.getsockname()[1])
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
    answer = await asyncio.wait_for(reader.read(), 3)
    assert answer.startswith(b"HTTP/1.1 200")
    writer.close()
    assert connections.closed["body_unread"] == 1
    server.stop()
    await asyncio.wait_for(task, 2)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("sent", "status", "reason"),
    [
        pytest.param(b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n", b"431", "head_too_large", id="head"),
        pytest.param(b"GET /" + b"a" * 100_000 + b" HTTP/1.1\r\n\r\n", b"431", "head_too_large", id="url"),
        pytest.param(
            b"POST / HTTP/1.1\r\nContent-Length: 100000\r\n\r\n" + b"x" * 100_000,
            b"413",
            "body_too_large",
            id="declared",
        ),
        pytest.param(
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n" + b"4000\r\n" + b"x" * 0x4000 + b"\r\n",
            b"413",
            "body_too_large",
            id="chunked",
        ),
        pytest.param(b"GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", b"400", "bad_request", id="bad-length"),
        pytest.param(b"\x16\x03\x01\x02\x00", b"400", "bad_request", id="tls-hello"),
    ],
)
async def test_protocol_refuses_oversized_or_malformed_requests_and_the_answer_arrives(
    sent: bytes, status: bytes, reason: str
) -> None:
    connections = AdminConnections()
    server, task, port = await open_server(connections)
    answer = await request(port, sent)
    assert answer.startswith(b"HTTP/1.1 " + status), answer[:100]
    assert b"connection: close" in answer
    assert connections.closed[reason] == 1
    server.stop()
    await asyncio.wait_for(task, 2)


@pytest.mark.anyio
async def test_protocol_at_its_connection_cap_evicts_the_oldest_idle_connection_for_a_new_one() -> None:
    connections = AdminConnections(max_connections=3)
    server, task, port = await open_server(connections)
    held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(3)]
    answer = await request(port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200")
    assert await asyncio.wait_for(held[0][0].read(), 3) == b"", "the oldest connection should have been closed"
    assert connections.closed["evicted"] >= 1
    for _, writer in held:
        writer.close()
    server.stop()
    await asyncio.wait_for(task, 2)


@pytest.mark.anyio
async def test_protocol_at_its_cap_with_every_connection_owed_an_answer_admits_a_newcomer_up_to_the_overflow() -> None:
    answer = asyncio.Event()

    async def held_answer(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["path"] == "/held":
            await answer.wait()  # every held connection is owed its answer: none can be evicted
        await PlainTextResponse("ok")(scope, receive, send)

    connections = AdminConnections(max_connections=2)
    sock = bind_admin_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    server = AdminServer(build_config(held_answer, connections))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    await asyncio.wait_for(server.listening.wait(), 5)
    held = []
    for count in range(1, 5):  # the cap, then the overflow: each one owed its answer before the next
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /held HTTP/1.1\r\nHost: x\r\n\r\n")
        held.append((reader, writer))
        deadline = asyncio.get_running_loop().time() + 5
        while len(server.server_state.tasks) < count:
            assert asyncio.get_running_loop().time() < deadline, f"request {count} never reached the app"
            await asyncio.sleep(0.01)
    assert len(connections) == 4
    assert connections.closed["evicted"] == 0
    # Beyond twice the cap, with every connection still owed, a newcomer is refused: closed
    # unanswered, or reset when its request had arrived before it was set up (the listener sets
    # connections up a turn after accepting them).
    try:
        answered = await request(port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    except ConnectionResetError:
        answered = b""
    assert answered == b""
    assert connections.closed["refused"] == 1
    answer.set()
    for reader, writer in held:
        assert (await asyncio.wait_for(reader.readline(), 5)).startswith(b"HTTP/1.1 200")
        writer.close()
    server.stop()
    await asyncio.wait_for(task, 2)


def test_protocol_connection_cap_fits_under_the_descriptor_limit() -> None:
    assert connection_cap(1_000_000) == protocol_module.MAX_CONNECTIONS
    assert connection_cap(256) == (256 - protocol_module.RESERVED_FDS) // protocol_module.OVERFLOW_FACTOR
    assert connection_cap(10) == 1
    assert raise_fd_limit() == resource.getrlimit(resource.RLIMIT_NOFILE)[0]


PIPELINED_PROBES = (
    b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n"
    b"HEAD /livez HTTP/1.1\r\nHost: x\r\n\r\n"
    b"POST /startupz HTTP/1.1\r\nHost: x\r\n\r\n"
    b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n"
    b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
)


async def answers_of(app: ASGIApp) -> bytes:
    sock = bind_admin_socket("127.0.0.1", 0)
    server = AdminServer(build_config(app))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    await asyncio.wait_for(server.listening.wait(), 5)
    try:
        return await request(sock.getsockname()[1], PIPELINED_PROBES)
    finally:
        server.stop()
        await asyncio.wait_for(task, 5)


@pytest.mark.anyio
async def test_protocol_answers_probes_itself_with_the_asgi_paths_bytes_and_in_request_order() -> None:
    async def slow(scope: Scope, receive: Receive, send: Send) -> None:
        await asyncio.sleep(0.05)  # the probe pipelined behind it must wait for its answer
        await PlainTextResponse("slow")(scope, receive, send)

    fast_path = ProbeFastPath(slow, {"shutdown": lambda: None}, {})

    async def through_asgi(scope: Scope, receive: Receive, send: Send) -> None:
        await fast_path(scope, receive, send)  # not a ProbeFastPath: the protocol has no probes to answer

    direct = await answers_of(fast_path)
    assert direct == await answers_of(through_asgi)
    statuses = [int(status) for status in re.findall(rb"HTTP/1\.1 (\d{3})", direct)]
    assert statuses == [200, 200, 405, 200, 200]
    assert direct.index(b"slow") < direct.rindex(b"HTTP/1.1 200")
