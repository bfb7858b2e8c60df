"""A Starlette app under uvicorn whose lifespan shutdown outlasts any grace period the e2e tests
give it: uvicorn closes its listener at SIGTERM, then runs the shutdown, and the kubelet SIGKILLs
it. `app` reports through SidecarMiddleware (it never gets to say complete); `silent_app` is the
same app without it, telling the sidecar nothing."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Final

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from sidecar.integrations.asgi import SidecarMiddleware

SHUTDOWN_SECONDS: Final = 60.0  # far past the tests' grace periods: it is SIGKILLed first


@contextlib.asynccontextmanager
async def lifespan(_: Starlette) -> AsyncIterator[None]:
    yield
    await asyncio.sleep(SHUTDOWN_SECONDS)  # a pool, a flush, a consumer: cleanup that takes too long


async def home(_: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


app = Starlette(routes=[Route("/", home)], lifespan=lifespan, middleware=[Middleware(SidecarMiddleware)])
silent_app = Starlette(routes=[Route("/", home)], lifespan=lifespan)
