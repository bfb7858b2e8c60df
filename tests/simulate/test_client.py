"""The simulator's HTTP client against real loopback servers: a status, or the kind of failure a
client behind kube-proxy would see (refused, reset, 5xx, timeout); never an exception."""

from __future__ import annotations

import asyncio

import pytest

from sidecar.simulate.client import Failure, Result, classify_status, http_get, parse_status, tcp_connect
from tests.simulate.loopback_server import (
    Behaviour,
    answering,
    answering_garbage,
    closed_port,
    closing_at_once,
    never_answering,
    serving,
)


@pytest.mark.parametrize(
    ("line", "status"),
    [
        pytest.param(b"HTTP/1.1 200 OK\r\n", 200, id="ok"),
        pytest.param(b"HTTP/1.1 503 Service Unavailable\r\n", 503, id="unavailable"),
        pytest.param(b"HTTP/1.0 404 Not Found\r\n", 404, id="http-1.0"),
        pytest.param(b"HTTP/1.1 204\r\n", 204, id="no-reason-phrase"),
        pytest.param(b"HTTP/1.1 301 Moved Permanently", 301, id="no-line-end"),
    ],
)
def test_parse_status_reads_the_code(line: bytes, status: int) -> None:
    assert parse_status(line) == status


@pytest.mark.parametrize(
    "line",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"\r\n", id="blank-line"),
        pytest.param(b"SSH-2.0-OpenSSH_9.6\r\n", id="not-http"),
        pytest.param(b"http/1.1 200 OK\r\n", id="lower-case-version"),
        pytest.param(b"HTTP/1.1\r\n", id="no-code"),
        pytest.param(b"HTTP/1.1 20\r\n", id="short-code"),
        pytest.param(b"HTTP/1.1 OK 200\r\n", id="words-first"),
        pytest.param(b"HTTP/1.1  200 OK\r\n", id="two-spaces"),
        pytest.param(b"HTTP/1.1 2000 OK\r\n", id="four-digit-code"),
        pytest.param(b"HTTP/1.1 200OK\r\n", id="reason-not-separated"),
    ],
)
def test_parse_status_rejects_garbage(line: bytes) -> None:
    with pytest.raises(ValueError, match="status"):
        parse_status(line)


@pytest.mark.parametrize(
    ("status", "failure"),
    [
        pytest.param(200, None, id="200"),
        pytest.param(302, None, id="302"),
        pytest.param(404, None, id="404-is-an-answer"),
        pytest.param(499, None, id="499"),
        pytest.param(500, Failure.SERVER_ERROR, id="500"),
        pytest.param(503, Failure.SERVER_ERROR, id="503"),
    ],
)
def test_classify_status_only_5xx_fails(status: int, failure: Failure | None) -> None:
    assert classify_status(status) == Result(status, failure)


@pytest.mark.parametrize(
    ("result", "text", "is_ok"),
    [
        pytest.param(Result(200, None), "200", True, id="ok"),
        pytest.param(Result(503, Failure.SERVER_ERROR), "503", False, id="5xx-shows-the-code"),
        pytest.param(Result(None, Failure.TIMEOUT), "timeout", False, id="timeout"),
        pytest.param(Result(None, Failure.REFUSED), "refused", False, id="refused"),
        pytest.param(Result(None, Failure.RESET), "reset", False, id="reset"),
        pytest.param(Result(None, None), "no response", True, id="nothing"),
    ],
)
def test_result_describe_gives_the_status_or_the_failure(result: Result, text: str, is_ok: bool) -> None:
    assert result.describe() == text
    assert result.is_ok is is_ok


async def get_from(behaviour: Behaviour, timeout_seconds: float = 2.0) -> Result:
    async with serving(behaviour) as server:
        return await http_get(server.port, "/", timeout_seconds=timeout_seconds)


@pytest.mark.parametrize(
    ("behaviour", "expected"),
    [
        pytest.param(answering(200), Result(200, None), id="200-ok"),
        pytest.param(answering(404), Result(404, None), id="404-answered"),
        pytest.param(answering(503), Result(503, Failure.SERVER_ERROR), id="503-server-error"),
        pytest.param(closing_at_once, Result(None, Failure.RESET), id="closed-at-once-reset"),
        pytest.param(answering_garbage, Result(None, Failure.RESET), id="garbage-reset"),
    ],
)
@pytest.mark.anyio
async def test_http_get_classifies_what_the_server_did(behaviour: Behaviour, expected: Result) -> None:
    assert await get_from(behaviour) == expected


@pytest.mark.anyio
async def test_http_get_times_out_when_the_server_never_answers() -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    result = await get_from(never_answering, timeout_seconds=0.2)
    took = loop.time() - started
    assert result == Result(None, Failure.TIMEOUT)
    # Not before the timeout; the upper bound only tells the timeout from a hang (the server
    # never answers), with room for a loaded machine.
    assert 0.2 <= took < 3.0


@pytest.mark.anyio
async def test_http_get_on_a_closed_port_is_refused() -> None:
    result = await http_get(closed_port(), "/", timeout_seconds=2.0)
    assert result == Result(None, Failure.REFUSED)


@pytest.mark.anyio
async def test_http_get_sends_the_path_and_headers_and_asks_to_close() -> None:
    async with serving(answering(200)) as server:
        result = await http_get(
            server.port, "/prestop", timeout_seconds=2.0, headers=[("Authorization", "Bearer t0k"), ("X-A", "1")]
        )
        assert result.is_ok
        (head,) = server.heads
    lines = head.decode().split("\r\n")
    assert lines[0] == "GET /prestop HTTP/1.1"
    assert "Authorization: Bearer t0k" in lines
    assert "X-A: 1" in lines
    assert "Connection: close" in lines
    assert any(line.startswith("Host: 127.0.0.1:") for line in lines)


@pytest.mark.anyio
async def test_tcp_connect_is_true_when_something_listens() -> None:
    async with serving(closing_at_once) as server:
        assert await tcp_connect(server.port, timeout_seconds=2.0) is True


@pytest.mark.anyio
async def test_tcp_connect_is_false_on_a_closed_port() -> None:
    assert await tcp_connect(closed_port(), timeout_seconds=2.0) is False
