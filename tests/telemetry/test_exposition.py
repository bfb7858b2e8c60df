from __future__ import annotations

import asyncio
import time

import pytest
from prometheus_client import CollectorRegistry, Gauge
from starlette.types import ASGIApp, Message, Scope

from sidecar.admin.probes import ProbeFastPath
from sidecar.telemetry.exposition import MetricsEndpoint, SharedEncodings

OPENMETRICS = "application/openmetrics-text; version=1.0.0"


def scrape_scope(accept: str = "") -> Scope:
    headers = [(b"accept", accept.encode())] if accept else []
    return {"type": "http", "method": "GET", "path": "/metrics", "headers": headers, "query_string": b""}


async def no_body() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


async def scrape(endpoint: ASGIApp, accept: str = "") -> tuple[int, dict[bytes, bytes], bytes]:
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    await endpoint(scrape_scope(accept), no_body, send)
    start, body = sent
    return start["status"], dict(start["headers"]), body["body"]


def test_exposition_an_encoding_made_before_a_scrape_arrived_is_not_reused() -> None:
    registry = CollectorRegistry()
    gauge = Gauge("g", "a gauge", registry=registry)
    encodings = SharedEncodings(registry)
    first = time.monotonic()
    body, _ = encodings.encoding("", first)
    assert b"g 0.0" in body
    gauge.set(5)
    second = time.monotonic()
    body, _ = encodings.encoding("", second)
    assert b"g 5.0" in body
    assert encodings.made == 2
    # A scrape that arrived earlier may use the newer encoding.
    assert encodings.encoding("", first)[0] == body
    assert encodings.made == 2


def test_exposition_each_content_type_has_its_own_encoding() -> None:
    encodings = SharedEncodings(CollectorRegistry())
    arrived = time.monotonic()
    text, text_type = encodings.encoding("", arrived)
    openmetrics, openmetrics_type = encodings.encoding(OPENMETRICS, arrived)
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
async def test_exposition_scrapes_waiting_their_turn_share_the_encoding_made_after_they_arrived() -> None:
    """Behind the admin port's front door: scrapes that arrived before an encoding use it, however
    many turns they waited; a scrape that arrived after a change gets a new one."""
    registry = CollectorRegistry()
    gauge = Gauge("g", "a gauge", registry=registry)
    endpoint = MetricsEndpoint(registry)
    fast_path = ProbeFastPath(endpoint, {}, {})
    answers = await asyncio.gather(*(scrape(fast_path) for _ in range(40)))
    assert {status for status, _, _ in answers} == {200}
    assert endpoint.encodings.made == 1, "scrapes that waited for their turn got encodings of their own"
    gauge.set(7)
    _, _, body = await scrape(fast_path)
    assert b"g 7.0" in body
    assert endpoint.encodings.made == 2


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
