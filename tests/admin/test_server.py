"""The admin server: its life (start, serve, stop), no signal handlers and no ticking, what uvicorn's
httptools protocol reads of it (this fails when uvicorn reads more), and the bound socket."""

from __future__ import annotations

import asyncio
import errno
import inspect
import re
import socket

import pytest
from starlette.responses import PlainTextResponse
from starlette.types import Receive, Scope, Send
from uvicorn.protocols.http import httptools_impl

from sidecar.admin.protocol import AdminConnections
from sidecar.admin.server import DUAL_STACK_HOST, AdminServer, ServerState, bind_admin_socket, build_config


def test_server_state_has_everything_uvicorns_protocol_reads_of_its_server() -> None:
    read = set(re.findall(r"\bserver_state\.(\w+)", inspect.getsource(httptools_impl)))
    assert read, "uvicorn's protocol no longer reads server_state.<name>: this test must be rewritten"
    assert sorted(name for name in read if not hasattr(ServerState(), name)) == []
    # AdminServer builds each protocol with these keywords, as uvicorn's Server did.
    protocol = inspect.signature(httptools_impl.HttpToolsProtocol.__init__).parameters
    assert {"config", "server_state", "app_state"} <= set(protocol)


@pytest.mark.anyio
async def test_server_installs_no_signal_handlers_and_does_not_tick(monkeypatch: pytest.MonkeyPatch) -> None:
    import signal

    slept: list[float] = []
    real_sleep = asyncio.sleep

    async def recording_sleep(delay: float, result: object = None) -> object:
        slept.append(delay)
        return await real_sleep(delay, result)

    monkeypatch.setattr(asyncio, "sleep", recording_sleep)
    before = signal.getsignal(signal.SIGTERM)
    sock = bind_admin_socket("127.0.0.1", 0)
    server = AdminServer(build_config(PlainTextResponse("ok")))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    await asyncio.wait_for(server.listening.wait(), 5)
    assert signal.getsignal(signal.SIGTERM) is before
    assert not server.server_state.default_headers or all(
        name != b"date" for name, _ in server.server_state.default_headers
    )
    server.stop()
    await asyncio.wait_for(task, 5)
    # uvicorn's own main loop and shutdown sleep 0.1 s at a time; ours wait on events only.
    assert [delay for delay in slept if delay > 0] == [], "the server must not sleep or poll"


def test_server_bind_refuses_a_port_in_use() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(OSError, match="in use"):
            bind_admin_socket("127.0.0.1", taken.getsockname()[1])


def test_server_runs_the_app_without_proxy_header_rewriting() -> None:
    """Nothing proxies the admin port: an X-Forwarded-For from a neighbour must not become the
    client, and no middleware may sit between a probe and its answer."""
    app = PlainTextResponse("ok")
    config = build_config(app)
    config.load()
    assert config.loaded_app is app


def test_server_bind_default_host_falls_back_to_ipv4_where_the_kernel_has_no_ipv6(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_socket = socket.socket

    def no_ipv6(family: int = socket.AF_INET, *args: object) -> socket.socket:
        if family == socket.AF_INET6:
            raise OSError(errno.EAFNOSUPPORT, "Address family not supported by protocol")
        return real_socket(family, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "socket", no_ipv6)
    with bind_admin_socket(DUAL_STACK_HOST, 0) as sock:
        assert sock.family == socket.AF_INET
        assert sock.getsockname()[0] == "0.0.0.0"
    with pytest.raises(OSError, match="not supported"):
        bind_admin_socket("::1", 0)  # an explicit IPv6 address does not fall back


def test_server_bind_default_host_is_dual_stack() -> None:
    with bind_admin_socket(DUAL_STACK_HOST, 0) as sock:
        assert sock.family == socket.AF_INET6
        assert sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 0


@pytest.mark.anyio
async def test_server_stop_closes_idle_and_sending_connections_finishes_an_answer_and_cancels_a_hung_one() -> None:
    release = asyncio.Event()
    hung_cancelled = asyncio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["path"] == "/hung":
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                hung_cancelled.set()
                raise
        if scope["path"] == "/busy":
            await release.wait()
        while (await receive()).get("more_body"):  # a body is read whole before the answer
            pass
        await PlainTextResponse("ok")(scope, receive, send)

    connections = AdminConnections()
    sock = bind_admin_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    server = AdminServer(build_config(app, connections))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    await asyncio.wait_for(server.listening.wait(), 5)
    idle = await asyncio.open_connection("127.0.0.1", port)  # one answer, then idle on keep-alive
    idle[1].write(b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (await asyncio.wait_for(idle[0].readuntil(b"ok"), 5)).startswith(b"HTTP/1.1 200")
    sending = await asyncio.open_connection("127.0.0.1", port)  # its body still to come
    sending[1].write(b"POST /ok HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n12345")
    busy = await asyncio.open_connection("127.0.0.1", port)
    busy[1].write(b"GET /busy HTTP/1.1\r\nHost: x\r\n\r\n")
    hung = await asyncio.open_connection("127.0.0.1", port)
    hung[1].write(b"GET /hung HTTP/1.1\r\nHost: x\r\n\r\n")
    deadline = asyncio.get_running_loop().time() + 5
    while len(server.server_state.tasks) < 3:  # /busy, /hung and the POST waiting for its body
        assert asyncio.get_running_loop().time() < deadline, "the requests never reached the app"
        await asyncio.sleep(0.01)

    server.stop()
    await asyncio.sleep(0)  # its shutdown begins before the busy request may answer (either order must work)
    release.set()
    await asyncio.wait_for(task, 5)
    assert hung_cancelled.is_set()
    assert connections.closed["shutdown"] == 2  # the idle and the sending connection
    assert await asyncio.wait_for(idle[0].read(), 5) == b""
    assert await asyncio.wait_for(sending[0].read(), 5) == b""
    answer = await asyncio.wait_for(busy[0].read(), 5)
    assert answer.startswith(b"HTTP/1.1 200")
    assert answer.endswith(b"ok")
    for _, writer in (idle, sending, busy, hung):
        writer.close()
