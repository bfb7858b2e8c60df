"""AdminServer replaces uvicorn internals; these tests fail when the hooks it relies on move."""

from __future__ import annotations

import asyncio
import errno
import inspect
import socket

import pytest
import uvicorn
from starlette.responses import PlainTextResponse
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from sidecar.admin.server import DUAL_STACK_HOST, AdminServer, bind_admin_socket, build_config


def test_server_uvicorn_still_routes_serve_through_the_hooks_we_replace() -> None:
    serve = inspect.getsource(uvicorn.Server.serve)
    inner = inspect.getsource(uvicorn.Server._serve)
    assert "self.capture_signals()" in serve, "Server.serve no longer uses capture_signals"
    assert "self.startup(sockets=sockets)" in inner
    assert "self.main_loop()" in inner
    assert "self.shutdown(sockets=sockets)" in inner
    assert list(inspect.signature(uvicorn.Server.shutdown).parameters) == ["self", "sockets"]
    assert list(inspect.signature(uvicorn.Server.startup).parameters) == ["self", "sockets"]
    # AdminServer.startup builds the protocol as uvicorn's does, for its own accept loop.
    protocol = inspect.signature(HttpToolsProtocol.__init__).parameters
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
