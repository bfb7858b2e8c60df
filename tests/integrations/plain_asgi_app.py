"""A Starlette app with SidecarMiddleware added the idiomatic way, and no background task: its stop
is only the middleware's own (the tests of a faulty sidecar URL and a sidecar that never answers)."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from sidecar.integrations.asgi import SidecarMiddleware


async def hello(request: Request) -> Response:
    return PlainTextResponse("hello")


app = Starlette(routes=[Route("/", hello)])
app.add_middleware(SidecarMiddleware)
