"""GET /metrics without request or response objects, and with one encoding (about 2 ms) shared by
every scrape that arrived before it was made: a flood of scrapes waiting their turn
(sidecar.admin.probes.RequestTurns) costs one encoding now and then, not one per scrape. The encoding
itself stays prometheus_client's, content negotiation included."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import CollectorRegistry
from starlette.datastructures import Headers
from starlette.types import Receive, Scope, Send

from sidecar.admin.probes import ARRIVED_AT


class SharedEncodings:
    """The registry's encodings by content type, each with the time it was made. A scrape may use
    an encoding made after it arrived: it shows every change made before the scrape's request was
    read. So one encoding serves every scrape waiting when it is made."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.made = 0  # encodings made, for tests
        self._encodings: dict[str, tuple[float, bytes]] = {}

    def encoding(self, accept: str, arrived_at: float) -> tuple[bytes, str]:
        """(body, content type) for a scrape that arrived at `arrived_at` (time.monotonic()),
        encoded anew only if the last encoding of that type was made before then."""
        encoder, content_type = choose_encoder(accept)
        made = self._encodings.get(content_type)
        if made is None or made[0] < arrived_at:
            made = (time.monotonic(), encoder(self.registry))
            self._encodings[content_type] = made
            self.made += 1
        return made[1], content_type


class MetricsEndpoint:
    """The ASGI endpoint for GET /metrics."""

    def __init__(self, registry: CollectorRegistry, on_scrape: Callable[[], None] = lambda: None) -> None:
        self.encodings = SharedEncodings(registry)
        self.on_scrape = on_scrape

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        arrived_at = scope.get(ARRIVED_AT) or time.monotonic()
        # Let every scrape that arrived in this turn begin first: one encoding then serves them.
        await asyncio.sleep(0)
        body, content_type = self.encodings.encoding(Headers(scope=scope).get("accept", ""), arrived_at)
        headers = [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        self.on_scrape()
