"""The admin endpoints of SPEC.md. Probes take a pure-ASGI fast path (sidecar.admin.probes); the rest
are routes (sidecar.admin.router). Handlers read and trigger the shutdown sequence;
they never wait on anything but its events, and every request is bounded in size and time."""

from __future__ import annotations

import asyncio
import dataclasses
import time

# hmac.compare_digest without hmac: importing hmac imports hashlib and loads libcrypto (about 3.5 MB
# in every pod) for a comparison that is this C function whenever OpenSSL's is not there (hmac.py).
from _operator import _compare_digest as compare_digest
from collections.abc import Callable, Mapping
from typing import Any, Final

from prometheus_client.metrics import Counter
from starlette.types import ASGIApp

from sidecar.admin.events import EventsEndpoint, ShutdownEvents
from sidecar.admin.probes import ProbeFastPath
from sidecar.admin.router import ClientDisconnect, Request, Response, Route, Router, json_response, text_response
from sidecar.drain.app_report import AppReport, DrainReportError, TooManyWorkers, parse_drain_report
from sidecar.lifecycle import DrainEndSource, Phase, Trigger
from sidecar.parts import ReadinessCheck
from sidecar.shutdown import ShutdownSequence
from sidecar.telemetry.exposition import MetricsEndpoint
from sidecar.telemetry.metrics import ShutdownMetrics

StatusDocument = Callable[[], Mapping[str, Any]]

# The paths the admin token guards: the label values of sidecar_admin_unauthorized_total.
GUARDED_PATHS: Final = ("/prestop", "/drain")


@dataclasses.dataclass(frozen=True)
class Limits:
    max_body_bytes: int = 8192
    body_timeout_seconds: float = 5.0
    max_prestop_waiters: int = 64


class RequestRejected(Exception):
    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message


def error_response(status_code: int, message: str, headers: Mapping[str, str] | None = None) -> Response:
    return json_response({"error": message}, status_code, headers)


class AdminRoutes:
    """The routed side: /prestop, /drain, /status, /metrics and /readyz?verbose."""

    def __init__(
        self,
        *,
        sequence: ShutdownSequence,
        metrics: ShutdownMetrics,
        app_report: AppReport,
        status: StatusDocument,
        readiness: Mapping[str, ReadinessCheck],
        admin_token: str | None,
        limits: Limits,
        on_scrape: Callable[[], None],
    ) -> None:
        self.sequence = sequence
        self.metrics = metrics
        self.app_report = app_report
        self.status = status
        self.readiness = readiness
        self.admin_token = None if admin_token is None else admin_token.encode()
        self.limits = limits
        self.prestop_waiters = 0
        self.unauthorized = Counter(
            "sidecar_admin_unauthorized",
            "Requests refused for a missing or wrong admin token, by path",
            ["path"],
            registry=metrics.registry,
        )
        for path in GUARDED_PATHS:
            self.unauthorized.labels(path=path)
        self.metrics_endpoint = MetricsEndpoint(metrics.registry, on_scrape)

    def routes(self) -> list[Route]:
        return [
            Route("/prestop", frozenset({"GET", "POST"}), handler=self.prestop),
            Route("/drain", frozenset({"POST"}), handler=self.drain),
            Route("/status", frozenset({"GET"}), handler=self.status_route),
            Route("/metrics", frozenset({"GET"}), app=self.metrics_endpoint),
            Route("/readyz", frozenset({"GET"}), handler=self.readyz_verbose),
        ]

    def is_authorized(self, request: Request) -> bool:
        if self.admin_token is None:
            return True
        # Compared as the bytes that came on the wire (decoded as latin-1); the token itself is
        # printable ASCII (sidecar.config), so its bytes are the same in any encoding.
        scheme, _, token = (request.header(b"authorization") or "").partition(" ")
        # A constant-time comparison: the time taken must not tell an attacker how much of the token matched.
        if scheme.lower() == "bearer" and compare_digest(token.strip().encode("latin-1"), self.admin_token):
            return True
        self.unauthorized.labels(path=request.path).inc()
        return False

    async def read_body(self, request: Request) -> bytes:
        limit = self.limits.max_body_bytes
        declared = request.header(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            raise RequestRejected(413, f"request body over {limit} bytes")
        body = bytearray()
        try:
            async with asyncio.timeout(self.limits.body_timeout_seconds):
                async for chunk in request.stream():
                    body += chunk
                    if len(body) > limit:
                        raise RequestRejected(413, f"request body over {limit} bytes")
        except TimeoutError:
            raise RequestRejected(408, "request body not received in time") from None
        except ClientDisconnect:
            # The client left, or the server closed it (sidecar.admin.protocol's timeouts and caps):
            # nobody reads this answer, and no traceback may be logged for it.
            raise RequestRejected(400, "client disconnected before its body arrived") from None
        return bytes(body)

    async def guard(self, request: Request) -> Response | None:
        """Authorization, then a bounded body; a rejection changes nothing."""
        if not self.is_authorized(request):
            return error_response(401, "missing or wrong bearer token", {"WWW-Authenticate": "Bearer"})
        try:
            await self.read_body(request)
        except RequestRejected as rejected:
            return error_response(rejected.status_code, rejected.message)
        return None

    async def prestop(self, request: Request) -> Response:
        if request.method == "HEAD":
            # The router answers HEAD wherever GET is allowed; HEAD is a safe method, and a
            # monitoring tool's HEAD must not shut the pod down.
            return error_response(405, "use GET or POST", {"Allow": "GET, POST"})
        response = await self.guard(request) or await self._hold_until_prestop_delay_over()
        self.metrics.count_prestop(response.status_code)
        return response

    async def _hold_until_prestop_delay_over(self) -> Response:
        sequence = self.sequence
        sequence.begin(Trigger.PRESTOP)
        arrived = time.monotonic()
        if sequence.timeline.phase is Phase.PRESTOP_DELAY:
            if self.prestop_waiters >= self.limits.max_prestop_waiters:
                return error_response(429, "too many /prestop callers waiting", {"Retry-After": "1"})
            # Every caller waits for the same instant, so a second call (a person's retry, a
            # concurrent hook) never extends the delay. The kubelet itself never retries an
            # httpGet hook (FailedPreStopHook, then the stop signal): the first call must work.
            # Shutdown has begun before this await, so a caller that disconnects cancels nothing.
            self.prestop_waiters += 1
            self.metrics.prestop_waiting.set(self.prestop_waiters)
            try:
                await sequence.wait_prestop_delay_over()
            finally:
                self.prestop_waiters -= 1
                self.metrics.prestop_waiting.set(self.prestop_waiters)
        timeline = sequence.timeline
        released = time.monotonic()
        return json_response(
            {
                "t0": timeline.to_wall(timeline.started_at),
                "deadline": timeline.to_wall(timeline.deadline),
                "released": timeline.to_wall(released),
                "waited_seconds": round(released - arrived, 6),
                "phase": timeline.phase.value,
            }
        )

    async def drain(self, request: Request) -> Response:
        if not self.is_authorized(request):
            return error_response(401, "missing or wrong bearer token", {"WWW-Authenticate": "Bearer"})
        try:
            report = parse_drain_report(await self.read_body(request))
        except RequestRejected as rejected:
            return error_response(rejected.status_code, rejected.message)
        except DrainReportError as exc:
            return error_response(400, str(exc))
        phase = self.sequence.timeline.phase
        if report.complete and phase not in (Phase.PRESTOP_DELAY, Phase.DRAIN):
            return error_response(409, f"no drain to complete during phase {phase}")
        try:
            accepted = self.app_report.apply(report)
        except TooManyWorkers as exc:
            return error_response(429, str(exc))
        return json_response({"phase": self.sequence.timeline.phase.value, "drain_end_accepted": accepted})

    async def status_route(self, request: Request) -> Response:
        return json_response(self.status())

    async def readyz_verbose(self, request: Request) -> Response:
        lines, ready = [], True
        for name, check in self.readiness.items():
            reason = check()
            ready = ready and reason is None
            lines.append(f"[+]{name} ok" if reason is None else f"[-]{name} failed: {reason}")
        lines.append("readyz check passed" if ready else "readyz check failed")
        return text_response("\n".join(lines) + "\n", 200 if ready else 503)


def create_app(
    *,
    sequence: ShutdownSequence,
    metrics: ShutdownMetrics,
    status: StatusDocument,
    readiness: Mapping[str, ReadinessCheck],
    admin_token: str | None,
    liveness: Mapping[str, ReadinessCheck] | None = None,
    app_report: AppReport | None = None,
    on_scrape: Callable[[], None] = lambda: None,
    limits: Limits | None = None,
    events: ShutdownEvents | None = None,
) -> ASGIApp:
    """The admin app. `app_report` defaults to one that ends `sequence`'s drain (and follows its
    phases); GET /events is served when `events` is given."""
    if app_report is None:
        app_report = AppReport(metrics=metrics, report_end=lambda: sequence.report_drain_end(DrainEndSource.APP_REPORT))
        sequence.timeline.add_listener(app_report.on_phase_change)
    routes = AdminRoutes(
        sequence=sequence,
        metrics=metrics,
        app_report=app_report,
        status=status,
        readiness=readiness,
        admin_token=admin_token,
        limits=limits or Limits(),
        on_scrape=on_scrape,
    )
    extra = [] if events is None else [Route("/events", frozenset({"GET"}), app=EventsEndpoint(events))]
    # Exact paths only: no redirect for /prestop/, whose Location would be built from the client's Host header.
    return ProbeFastPath(Router([*routes.routes(), *extra]), readiness, liveness or {})
