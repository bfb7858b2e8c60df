"""simulate's second built-in app (`--app asgi`): a real uvicorn serving a Starlette app wrapped in
sidecar.integrations' SidecarMiddleware, which finds its sidecar at $SHUTDOWN_SIDECAR_URL.
`--no-middleware` runs the same app as plain uvicorn, the rehearsal's baseline."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from typing import Any

from sidecar.integrations.asgi import SidecarMiddleware


def build_app(latency_seconds: float, *, middleware: bool) -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse, Response
    from starlette.routing import Route

    async def hello(request: Request) -> Response:
        await asyncio.sleep(latency_seconds)
        return PlainTextResponse("hello\n")

    app = Starlette(routes=[Route("/", hello)])
    return SidecarMiddleware(app) if middleware else app


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sidecar.simulate.asgi_app", description=__doc__)
    # The pod's address, as simulate gives it (a pod is reached at its IP, never at 127.0.0.1).
    parser.add_argument("--host", default=os.environ.get("HOST") or "127.0.0.1", help="default $HOST, else 127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--latency", type=float, default=0.05, help="seconds each request takes")
    parser.add_argument("--no-middleware", action="store_true", help="plain uvicorn: no SidecarMiddleware")
    args = parser.parse_args(argv)
    import uvicorn

    app = build_app(args.latency, middleware=not args.no_middleware)
    # uvicorn's own graceful stop at SIGTERM: it stops listening, lets requests in flight finish,
    # then runs the lifespan shutdown (where the middleware says complete).
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
