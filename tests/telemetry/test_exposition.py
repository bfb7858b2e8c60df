from __future__ import annotations

import asyncio
import collections

import pytest
from prometheus_client import CollectorRegistry, Gauge
from starlette.types import Message, Scope

from sidecar.telemetry.exposition import SCRAPES_PER_TURN, MetricsEndpoint, SharedEncodings

OPENMETRICS = "application/openmetrics-text; version=1.0.0"


def scrape_scope(accept: str = "") -> Scope:
    headers = [(b"accept", accept.encode())] if accept else []
    return {"type": "http", "method": "GET", "path": "/metrics", "headers": headers, "query_string": b""}


async def no_body() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


class LoopTurns:
    """Counts event-loop turns: a callback that reschedules itself runs once per turn."""

    def __init__(self) -> None:
        self.turn = 0
        self._loop = asyncio.get_running_loop()
        self._handle = self._loop.call_soon(self._tick)

    def _tick(self) -> None:
        self.turn += 1
        self._handle = self._loop.call_soon(self._tick)

    def stop(self) -> None:
        self._handle.cancel()


async def scrape(endpoint: MetricsEndpoint, accept: str = "") -> tuple[int, dict[bytes, bytes], bytes]:
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    await endpoint(scrape_scope(accept), no_body, send)
    start, body = sent
    return start["status"], dict(start["headers"]), body["body"]


def test_exposition_an_encoding_made_before_a_scrape_began_is_not_reused() -> None:
    registry = CollectorRegistry()
    gauge = Gauge("g", "a gauge", registry=registry)
    encodings = SharedEncodings(registry)
    first = encodings.begin()
    body, _ = encodings.encoding("", first)
    assert b"g 0.0" in body
    gauge.set(5)
    second = encodings.begin()
    body, _ = encodings.encoding("", second)
    assert b"g 5.0" in body
    assert encodings.made == 2
    # A scrape holding an older ticket may use the newer encoding.
    assert encodings.encoding("", first)[0] == body
    assert encodings.made == 2


def test_exposition_each_content_type_has_its_own_encoding() -> None:
    encodings = SharedEncodings(CollectorRegistry())
    ticket = encodings.begin()
    text, text_type = encodings.encoding("", ticket)
    openmetrics, openmetrics_type = encodings.encoding(OPENMETRICS, ticket)
    assert text_type.startswith("text/plain")
    assert openmetrics_type.startswith("application/openmetrics-text")
    assert openmetrics.endswith(b"# EOF\n")
    assert not text.endswith(b"# EOF\n")
    assert encodings.made == 2


@pytest.mark.anyio
async def test_exposition_scrapes_that_arrive_together_share_one_encoding() -> None:
    endpoint = MetricsEndpoint(CollectorRegistry())
    answers = await asyncio.gather(*(scrape(endpoint) for _ in range(40)))
    assert {status for status, _, _ in answers} == {200}
    assert endpoint.encodings.made == 1


@pytest.mark.anyio
async def test_exposition_answers_at_most_a_few_scrapes_per_loop_turn() -> None:
    """The bound that keeps probes from queueing behind a flood of scrapes."""
    endpoint = MetricsEndpoint(CollectorRegistry())
    turns = LoopTurns()
    answered_in_turn: collections.Counter[int] = collections.Counter()

    async def counted() -> None:
        await scrape(endpoint)
        answered_in_turn[turns.turn] += 1

    try:
        await asyncio.gather(*(counted() for _ in range(40)))
    finally:
        turns.stop()
    assert sum(answered_in_turn.values()) == 40
    assert max(answered_in_turn.values()) <= SCRAPES_PER_TURN


@pytest.mark.anyio
async def test_exposition_a_client_that_does_not_read_holds_no_turn() -> None:
    endpoint = MetricsEndpoint(CollectorRegistry())
    never = asyncio.get_running_loop().create_future()

    async def stuck_send(message: Message) -> None:
        await never  # the transport's flow control, with a client that never reads

    stuck = [asyncio.create_task(endpoint(scrape_scope(), no_body, stuck_send)) for _ in range(SCRAPES_PER_TURN * 2)]
    try:
        status, _, _ = await asyncio.wait_for(scrape(endpoint), timeout=5)
        assert status == 200
    finally:
        for task in stuck:
            task.cancel()
        await asyncio.gather(*stuck, return_exceptions=True)


@pytest.mark.anyio
async def test_exposition_headers_and_the_scrape_callback() -> None:
    scraped = 0

    def on_scrape() -> None:
        nonlocal scraped
        scraped += 1

    endpoint = MetricsEndpoint(CollectorRegistry(), on_scrape)
    status, headers, body = await scrape(endpoint, OPENMETRICS)
    assert status == 200
    assert headers[b"content-type"].startswith(b"application/openmetrics-text")
    assert headers[b"content-length"] == str(len(body)).encode()
    assert scraped == 1
