"""GET /metrics, bounded so that no number of scrapers can queue the kubelet's probes behind them.
Scrapes that arrive together share one encoding, and at most SCRAPES_PER_TURN of them are
answered per event-loop turn: the others wait their turn without using the CPU, so a turn stays
short and a probe that arrives during a flood is answered a few short turns later. The encoding
itself stays prometheus_client's (content negotiation included)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Final

from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import CollectorRegistry
from starlette.datastructures import Headers
from starlette.types import Receive, Scope, Send

# Each answer costs a few tens of microseconds past its encoding; four a turn keep a turn well
# under a millisecond however many scrapers are waiting (256 made probes wait 77-107 ms before).
SCRAPES_PER_TURN: Final = 4


class SharedEncodings:
    """The registry's encodings by content type, each with the number of scrapes begun when it was
    made. A scrape may use an encoding made after it began (it shows every change made before the
    scrape's request was read), so one encoding serves every scrape waiting when it is made."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.begun = 0
        self.made = 0  # encodings made, for tests and the benchmark
        self._encodings: dict[str, tuple[int, bytes]] = {}

    def begin(self) -> int:
        """A scrape's ticket: encodings made from now on are fresh enough for it."""
        self.begun += 1
        return self.begun

    def encoding(self, accept: str, ticket: int) -> tuple[bytes, str]:
        """(body, content type) for a scrape holding `ticket`, encoded anew only if the last
        encoding of that type is older than the ticket."""
        encoder, content_type = choose_encoder(accept)
        made = self._encodings.get(content_type)
        if made is None or made[0] < ticket:
            made = (self.begun, encoder(self.registry))
            self._encodings[content_type] = made
            self.made += 1
        return made[1], content_type


class MetricsEndpoint:
    """The ASGI endpoint for GET /metrics (no request or response objects: a scrape is read, given
    its turn, and answered)."""

    def __init__(self, registry: CollectorRegistry, on_scrape: Callable[[], None] = lambda: None) -> None:
        self.encodings = SharedEncodings(registry)
        self.on_scrape = on_scrape
        self._turns = asyncio.Semaphore(SCRAPES_PER_TURN)  # binds to the loop at its first wait

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        ticket = self.encodings.begin()
        # Let every scrape read in this turn take its ticket first: one encoding then serves them.
        await asyncio.sleep(0)
        # FIFO (asyncio.Semaphore is fair since Python 3.11.1): a scrape that arrives while others
        # wait queues behind them. A permit is held from the encoding to the next turn, never
        # across a send (a client that does not read must not hold one), and a released permit
        # wakes the next waiter a turn later: at most SCRAPES_PER_TURN answers per turn.
        async with self._turns:
            body, content_type = self.encodings.encoding(Headers(scope=scope).get("accept", ""), ticket)
            await asyncio.sleep(0)
        headers = [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        self.on_scrape()
