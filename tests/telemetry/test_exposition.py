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


def odd_registry() -> CollectorRegistry:
    """Names and values each escaping scheme treats differently, and every metric type."""
    from prometheus_client import Counter, Enum, Histogram, Info, Summary

    registry = CollectorRegistry()
    Gauge("g", 'a "gauge"\nwith \\ in its help', ["label"], registry=registry).labels(label='a"b\\c\nd').set(1e10)
    Counter("c", "a counter", registry=registry).inc(2.5)
    Histogram("h", "a histogram", buckets=(0.5, 1e7), registry=registry).observe(0.25)
    Summary("s", "a summary", registry=registry).observe(3)
    Info("i", "an info", registry=registry).info({"version": "1"})
    Enum("e", "an enum", states=["on", "off"], registry=registry)
    Gauge("with.dots:and_colons", "utf-8 name", ["la.bel"], registry=registry).labels(**{"la.bel": "x"}).set(-1)
    return registry


@pytest.mark.parametrize("escaping", ["underscores", "dots", "values", "allow-utf-8"])
def test_exposition_the_text_format_is_prometheus_clients(escaping: str) -> None:
    from prometheus_client.exposition import generate_latest

    from sidecar.telemetry.exposition import encode_text
    from sidecar.telemetry.metrics import ShutdownMetrics

    for registry in (
        odd_registry(),
        ShutdownMetrics(CollectorRegistry(), version="1", grace_period_seconds=30).registry,
    ):
        assert encode_text(registry, escaping=escaping) == generate_latest(registry, escaping=escaping)


@pytest.mark.parametrize(
    "accept",
    [
        "",
        "text/plain",
        "text/plain; version=0.0.4",
        "text/plain;version=1.0.0;escaping=allow-utf-8",
        "text/plain; version=1.0.0; escaping=nonsense",
        OPENMETRICS,
        "application/openmetrics-text",
        "application/openmetrics-text; version=0.0.1",
        "application/openmetrics-text; version=1.0.0; escaping=dots",
        # Prometheus 2 and 3 as they scrape
        "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
        "text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
        "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,application/openmetrics-text;"
        "version=0.0.1;q=0.5,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2",
        "application/json, */*",
    ],
)
def test_exposition_content_negotiation_is_prometheus_clients(accept: str) -> None:
    from prometheus_client.exposition import choose_encoder as prometheus_choose_encoder

    from sidecar.telemetry.exposition import choose_encoder

    registry = odd_registry()
    encoder, content_type = choose_encoder(accept)
    expected_encoder, expected_type = prometheus_choose_encoder(accept)
    assert content_type == expected_type
    assert encoder(registry) == expected_encoder(registry)
