"""The kubelet's probes (GET/HEAD /livez, /readyz, /startupz), answered without routing or request
objects (as whole bytes the protocol writes itself, or on a pure-ASGI fast path when a probe has a
body or a query): kubelets on every node hit them constantly, and they must never queue behind
anything else. Every other request takes its turn (RequestTurns), so that no
flood of them (scrapes, /status, 404s) makes a loop turn long. Reads the checks it is given;
changes nothing."""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Mapping
from typing import Final

from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import STATUS_LINE

from sidecar.parts import ReadinessCheck

PROBE_PATHS: Final = frozenset({"/livez", "/readyz", "/startupz"})
PROBE_URLS: Final = frozenset(path.encode() for path in PROBE_PATHS)
OK_HEAD: Final = STATUS_LINE[200] + b"content-type: text/plain; charset=utf-8\r\ncontent-length: 2\r\n\r\n"
OK_ANSWER: Final = OK_HEAD + b"ok"
# Requests other than probes started per event-loop turn. A turn that starts four Starlette
# requests lasts well under a millisecond (a /metrics encoding, shared, about 2 ms); 256 clients
# sending /status back to back made probes wait 100-230 ms (p99) when all started at once.
REQUESTS_PER_TURN: Final = 4
# Scope key: time.monotonic() when a request other than a probe arrived, before it waited for its
# turn (sidecar.telemetry.exposition shares an encoding with every scrape that arrived before it).
ARRIVED_AT: Final = "sidecar.arrived_at"


def first_failure(checks: Mapping[str, ReadinessCheck]) -> str | None:
    for name, check in checks.items():
        reason = check()
        if reason is not None:
            return f"{name}: {reason}"
    return None


class RequestTurns:
    """At most `per_turn` requests start per event-loop turn; the others wait, in order and without
    using the CPU, for a later turn. A request within the turn's count starts at once (it does not
    wait a turn: a /prestop hook in a burst of connections is answered turns sooner, each turn then
    being long). Nothing is held once a request has started, so a request that waits (a /prestop
    held, an event stream, a client not reading) holds nothing."""

    def __init__(self, per_turn: int = REQUESTS_PER_TURN) -> None:
        self.per_turn = per_turn
        self._started = 0  # in this turn
        self._turn_ends_scheduled = False
        self._waiting: collections.deque[asyncio.Future[None]] = collections.deque()

    async def wait(self) -> None:
        if self._started < self.per_turn and not self._waiting:
            self._start()
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiting.append(waiter)
        self._schedule_turn_end()
        await waiter  # cancelled with its request: skipped when turns come

    def _start(self) -> None:
        self._started += 1
        self._schedule_turn_end()

    def _schedule_turn_end(self) -> None:
        if not self._turn_ends_scheduled:
            self._turn_ends_scheduled = True
            # call_soon from a callback of this turn runs in the next turn.
            asyncio.get_running_loop().call_soon(self._next_turn)

    def _next_turn(self) -> None:
        self._turn_ends_scheduled = False
        self._started = 0
        while self._waiting and self._started < self.per_turn:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)
                self._start()
        if self._waiting:
            self._schedule_turn_end()


class ProbeFastPath:
    """Answers GET/HEAD /livez, /readyz and /startupz (with any query but /readyz's) without routing
    or request objects, and at once; everything else (including /readyz?verbose) goes to `app` when
    its turn comes."""

    def __init__(
        self,
        app: ASGIApp,
        readiness: Mapping[str, ReadinessCheck],
        liveness: Mapping[str, ReadinessCheck],
        turns: RequestTurns | None = None,
    ) -> None:
        self.app = app
        self.readiness = readiness
        self.liveness = liveness
        self.turns = turns or RequestTurns()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path")
        # /readyz?verbose is a route (the checks one by one); any other query on a probe path is
        # ignored, as the kubelet's probe must not get a 404 for it (and a restart, for /livez).
        verbose = path == "/readyz" and scope.get("query_string")
        if scope["type"] != "http" or path not in PROBE_PATHS or verbose:
            scope[ARRIVED_AT] = time.monotonic()
            await self.turns.wait()
            await self.app(scope, receive, send)
            return
        status, body = self.answer(scope["method"], path)
        headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def answer(self, method: str, path: str) -> tuple[int, bytes]:
        """The status and body for a probe path (any query but /readyz's ignored by the caller)."""
        if method not in ("GET", "HEAD"):
            return 405, b"method not allowed"
        if path == "/startupz":
            # Everything is built before the listener opens: a request answered here means started.
            return 200, b"ok"
        failure = first_failure(self.liveness if path == "/livez" else self.readiness)
        return (200, b"ok") if failure is None else (503, failure.encode())

    def raw_answer(self, method: bytes, url: bytes, keep_alive: bool) -> bytes | None:
        """The whole HTTP/1.1 answer to a probe without a query, for the protocol to write without
        building an ASGI request (sidecar.admin.protocol); None for anything else. The bytes uvicorn
        writes for the ASGI path's answer, headers in the same order."""
        if url not in PROBE_URLS:
            return None
        status, body = self.answer(method.decode("ascii"), url.decode("ascii"))
        if status == 200 and keep_alive:
            return OK_HEAD if method == b"HEAD" else OK_ANSWER
        head = STATUS_LINE[status] + b"content-type: text/plain; charset=utf-8\r\ncontent-length: %d\r\n" % len(body)
        head += b"\r\n" if keep_alive else b"connection: close\r\n\r\n"
        return head if method == b"HEAD" else head + body
