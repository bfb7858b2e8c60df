"""A Starlette app wrapped in SidecarMiddleware, served by a real uvicorn or hypercorn in the
tests: a quick route, one that holds until the stop (as a long poll would), a WebSocket echo, and
a lifespan whose background tasks are drained with the sidecar's budget."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from sidecar.integrations.asgi import SidecarMiddleware
from sidecar.integrations.lifespan import BackgroundTasks


async def hello(request: Request) -> Response:
    return PlainTextResponse("hello")


async def until_stop(request: Request) -> Response:
    """A long poll that ends politely at the stop."""
    state = request.scope["sidecar.shutdown"]
    await state.stopping.wait()
    return JSONResponse({"phase": state.phase, "t0": state.t0, "deadline": state.deadline})


async def echo(websocket: WebSocket) -> None:
    await websocket.accept()
    try:
        while True:
            await websocket.send_text(await websocket.receive_text())
    except WebSocketDisconnect:
        pass


async def forever() -> None:
    await asyncio.Event().wait()


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    tasks = BackgroundTasks()
    tasks.spawn(asyncio.sleep(0.01), name="short")
    tasks.spawn(forever(), name="forever")
    yield
    await tasks.drain()  # the forever task is cancelled after the default short wait


routes = [Route("/", hello), Route("/until-stop", until_stop), WebSocketRoute("/ws", echo)]
app = SidecarMiddleware(Starlette(routes=routes, lifespan=lifespan))
