"""The kubelet's probes (GET/HEAD /livez, /readyz, /startupz), answered on a pure-ASGI fast path
without routing or request objects: kubelets on every node hit them constantly, and they must
never queue behind anything else. Reads the checks it is given; changes nothing."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from starlette.types import ASGIApp, Receive, Scope, Send

from sidecar.parts import ReadinessCheck

PROBE_PATHS: Final = frozenset({"/livez", "/readyz", "/startupz"})


def first_failure(checks: Mapping[str, ReadinessCheck]) -> str | None:
    for name, check in checks.items():
        reason = check()
        if reason is not None:
            return f"{name}: {reason}"
    return None


class ProbeFastPath:
    """Answers GET/HEAD /livez, /readyz and /startupz without routing or request objects;
    everything else (including /readyz?verbose) goes to `app`."""

    def __init__(
        self, app: ASGIApp, readiness: Mapping[str, ReadinessCheck], liveness: Mapping[str, ReadinessCheck]
    ) -> None:
        self.app = app
        self.readiness = readiness
        self.liveness = liveness

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path")
        if scope["type"] != "http" or path not in PROBE_PATHS or scope["query_string"]:
            await self.app(scope, receive, send)
            return
        if scope["method"] not in ("GET", "HEAD"):
            status, body = 405, b"method not allowed"
        elif path == "/livez":
            failure = first_failure(self.liveness)
            status, body = (200, b"ok") if failure is None else (503, failure.encode())
        elif path == "/startupz":
            # Everything is built before the listener opens: a request answered here means started.
            status, body = 200, b"ok"
        else:
            failure = first_failure(self.readiness)
            status, body = (200, b"ok") if failure is None else (503, failure.encode())
        headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
