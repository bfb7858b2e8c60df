"""The admin endpoints' routing, requests and responses in plain ASGI, answering as Starlette did:
exact paths (no redirect for a trailing slash), 404 `Not Found`, 405 `Method Not Allowed` with an
Allow header, HEAD wherever GET is allowed, compact JSON. Starlette's imports (http.client and
ssl, hashlib and libcrypto, anyio) cost every pod about 5 MB and 20 ms of its start for six
routes. Routing only: what an endpoint does is sidecar.admin.routes's business."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, Final

from starlette.types import ASGIApp, Receive, Scope, Send

TEXT_TYPE: Final = b"text/plain; charset=utf-8"
JSON_TYPE: Final = b"application/json"


class ClientDisconnect(Exception):
    """The client left (or the server closed it) before its body had arrived."""


class Request:
    """What a handler reads of a request: method, path, headers, and the body as it arrives."""

    def __init__(self, scope: Scope, receive: Receive) -> None:
        self.scope = scope
        self._receive = receive
        self.method: str = scope["method"]
        self.path: str = scope["path"]

    def header(self, name: bytes) -> str | None:
        """The first header `name` (lower case), decoded as latin-1 (the bytes as they came)."""
        return next((value.decode("latin-1") for key, value in self.scope["headers"] if key == name), None)

    async def stream(self) -> AsyncIterator[bytes]:
        """The body's chunks. Raises ClientDisconnect when the client goes first."""
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                raise ClientDisconnect
            body = message.get("body", b"")
            if body:
                yield body
            if not message.get("more_body", False):
                return


@dataclasses.dataclass(frozen=True)
class Response:
    status_code: int
    body: bytes
    content_type: bytes
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in self.headers.items()]
        headers += [(b"content-length", b"%d" % len(self.body)), (b"content-type", self.content_type)]
        await send({"type": "http.response.start", "status": self.status_code, "headers": headers})
        await send({"type": "http.response.body", "body": self.body})


def json_response(content: Any, status_code: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    body = json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()
    return Response(status_code, body, JSON_TYPE, headers or {})


def text_response(text: str, status_code: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return Response(status_code, text.encode(), TEXT_TYPE, headers or {})


Handler = Callable[[Request], Awaitable[Response]]


@dataclasses.dataclass(frozen=True)
class Route:
    """`handler` takes a Request; `app`, an ASGI app, takes the request whole (an event stream)."""

    path: str
    methods: frozenset[str]
    handler: Handler | None = None
    app: ASGIApp | None = None

    @property
    def allowed(self) -> frozenset[str]:
        return self.methods | {"HEAD"} if "GET" in self.methods else self.methods


class Router:
    """An ASGI app dispatching on the exact path, then the method."""

    def __init__(self, routes: list[Route]) -> None:
        self.routes = {route.path: route for route in routes}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = self.routes.get(scope["path"])
        if route is None:
            await text_response("Not Found", 404)(scope, receive, send)
        elif scope["method"] not in route.allowed:
            allow = ", ".join(sorted(route.allowed))
            await text_response("Method Not Allowed", 405, {"Allow": allow})(scope, receive, send)
        elif route.app is not None:
            await route.app(scope, receive, send)
        elif route.handler is not None:
            response = await route.handler(Request(scope, receive))
            await response(scope, receive, send)
