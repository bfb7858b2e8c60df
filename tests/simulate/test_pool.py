"""Keep-alive connections and their pools against a real loopback server: a connection reused
until the server says `Connection: close` or closes it, checked before reuse, never retried."""

from __future__ import annotations

import asyncio

import pytest

from sidecar.simulate.client import Failure
from sidecar.simulate.pool import Connection, Pool, exchange, open_to, parse_headers
from tests.simulate.keepalive_server import KeepAliveServer, keep_alive_serving
from tests.simulate.loopback_server import closing_at_once, serving
from tests.simulate.waiting import wait_until

WAIT_SECONDS = 5.0


async def connect(pool: Pool[str], port: int, pod: str = "pod-a") -> Connection[str]:
    return await asyncio.wait_for(open_to(pod, port, pool), WAIT_SECONDS)


@pytest.mark.parametrize("chunked", [pytest.param(False, id="content-length"), pytest.param(True, id="chunked")])
@pytest.mark.anyio
async def test_exchange_reads_the_whole_answer_and_keeps_the_connection(chunked: bool) -> None:
    async with keep_alive_serving(KeepAliveServer(chunked=chunked)) as server:
        pool: Pool[str] = Pool(max_idle=1)
        connection = await connect(pool, server.port)
        for _ in range(3):
            result, keep = await exchange(connection, server.port, "/", timeout_seconds=WAIT_SECONDS)
            assert (result.status, result.failure, keep) == (200, None, True)
        connection.close()
    assert server.requests_by_connection == [3]
    assert (pool.opened, connection.requests) == (1, 3)


@pytest.mark.anyio
async def test_exchange_answered_connection_close_is_not_kept() -> None:
    async with keep_alive_serving(KeepAliveServer(close_after=1)) as server:
        connection = await connect(Pool(max_idle=1), server.port)
        result, keep = await exchange(connection, server.port, "/", timeout_seconds=WAIT_SECONDS)
        connection.close()
    assert result.is_ok
    assert not keep


@pytest.mark.anyio
async def test_exchange_on_a_connection_the_server_closed_is_a_reset_and_closes_it() -> None:
    async with serving(closing_at_once) as server:
        connection = await connect(Pool(max_idle=1), server.port)
        result, keep = await exchange(connection, server.port, "/", timeout_seconds=WAIT_SECONDS)
    assert result.failure is Failure.RESET
    assert not keep
    assert connection.writer.is_closing()


@pytest.mark.anyio
async def test_pool_check_drops_a_connection_the_server_closed_while_idle() -> None:
    async with keep_alive_serving(KeepAliveServer()) as server:
        pool: Pool[str] = Pool(max_idle=2)
        connection = await connect(pool, server.port)
        await exchange(connection, server.port, "/", timeout_seconds=WAIT_SECONDS)
        pool.put(connection)
        assert not connection.is_dropped()
        server.close_connections()
        # The server's FIN reaches the client's socket on its own time: polled, with a deadline.
        await wait_until(connection.is_dropped, WAIT_SECONDS)
        assert pool.take() is None  # checked before reuse: dropped, not handed out
    assert connection.writer.is_closing()


@pytest.mark.anyio
async def test_pool_take_gives_the_last_returned_connection_to_the_asked_pod() -> None:
    async with keep_alive_serving(KeepAliveServer()) as server:
        pool: Pool[str] = Pool(max_idle=3)
        a1, b, a2 = [await connect(pool, server.port, pod) for pod in ("pod-a", "pod-b", "pod-a")]
        for connection in (a1, b, a2):
            pool.put(connection)
        assert pool.take("pod-b") is b
        assert pool.take() is a2
        assert pool.take("pod-b") is None
        assert pool.take("pod-a") is a1
        for connection in (a1, b, a2):
            connection.close()


@pytest.mark.anyio
async def test_pool_put_past_max_idle_closes_the_oldest() -> None:
    async with keep_alive_serving(KeepAliveServer()) as server:
        pool: Pool[str] = Pool(max_idle=1)
        first, second = await connect(pool, server.port), await connect(pool, server.port)
        pool.put(first)
        pool.put(second)
        assert first.writer.is_closing()
        assert pool.take() is second
        assert pool.take() is None
        second.close()


def test_parse_headers_lower_cases_names_and_joins_repeats() -> None:
    headers = parse_headers(b"Connection: keep-alive\r\nX-A: 1\r\nx-a: 2\r\nno colon here")
    assert headers == {"connection": "keep-alive", "x-a": "1, 2"}
