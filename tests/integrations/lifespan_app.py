"""The README's lifespan pattern on a real uvicorn (tests/integrations/test_lifespan_process.py): a
loop that never ends (the issue's `while True: ...; await asyncio.sleep(1)`) and a task declared
waited-for that finishes a unit of work after the stop, longer than the default wait."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from sidecar.integrations import shutdown_state
from sidecar.integrations.asgi import SidecarMiddleware
from sidecar.integrations.lifespan import DEFAULT_WAIT_SECONDS, BackgroundTasks

tasks = BackgroundTasks()
cache: dict[str, float] = {}


async def refresh_cache() -> None:
    while True:
        cache["refreshed_at"] = time.time()
        await asyncio.sleep(1)  # the loop's period, as an app's refresh loop has one


async def upload_batch() -> None:
    """A unit of work that the stop interrupts and that must be finished: it takes longer than
    the default wait, so only a declared wait lets it end."""
    await shutdown_state().stopping.wait()
    await asyncio.sleep(DEFAULT_WAIT_SECONDS * 2)  # the work itself


async def hello(request: Request) -> Response:
    return PlainTextResponse("hello")


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    tasks.spawn(refresh_cache(), name="refresh-cache")
    tasks.spawn(upload_batch(), name="upload-batch", wait=True)
    yield
    await tasks.drain()


app = Starlette(routes=[Route("/", hello)], lifespan=lifespan)
app.add_middleware(SidecarMiddleware)
