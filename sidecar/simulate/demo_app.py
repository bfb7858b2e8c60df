"""A demo HTTP app whose request latency and shutdown behaviour are flags: the good citizen that
drains at SIGTERM, one that exits at once, one that ignores SIGTERM, one that cleans up slowly.
simulate's default app; also used by the tests, the benchmarks and the README (as
`python -m sidecar.demo`). Standard library only, HTTP/1.1 keep-alive; imports nothing of the sidecar."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
import urllib.request
from collections.abc import Sequence

BEHAVIOURS = ("drain", "exit", "ignore")


def log(message: str, **fields: object) -> None:
    line = {"ts": round(time.time(), 6), "logger": "demo", "msg": message, **fields}
    sys.stderr.write(json.dumps(line) + "\n")
    sys.stderr.flush()


class DemoApp:
    def __init__(self, latency_seconds: float) -> None:
        self.latency_seconds = latency_seconds
        self.inflight = 0
        self.served = 0
        self.idle = asyncio.Event()
        self.idle.set()
        self.stopping = False
        self.connections: set[asyncio.StreamWriter] = set()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections.add(writer)
        try:
            while not self.stopping:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value.strip())
                if length:
                    await reader.readexactly(length)
                await self.respond(writer)
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            self.connections.discard(writer)
            writer.close()

    async def respond(self, writer: asyncio.StreamWriter) -> None:
        self.inflight += 1
        self.idle.clear()
        try:
            await asyncio.sleep(self.latency_seconds)
            self.served += 1
            # Once stopping, tell the client this connection ends with this response.
            connection = b"close" if self.stopping else b"keep-alive"
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 3\r\nconnection: "
                + connection
                + b"\r\n\r\nok\n"
            )
            await writer.drain()
        finally:
            self.inflight -= 1
            if self.inflight == 0:
                self.idle.set()


def report_drained(url: str) -> None:
    request = urllib.request.Request(  # noqa: S310 - the operator gives the sidecar's URL
        url, data=b'{"event": "complete"}', headers={"content-type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=2):  # noqa: S310
        pass


async def run_demo(args: argparse.Namespace) -> int:
    app = DemoApp(args.latency)
    server = await asyncio.start_server(app.handle, args.host, args.port)
    port = server.sockets[0].getsockname()[1]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    if args.on_sigterm == "drain":
        loop.add_signal_handler(signal.SIGTERM, stop.set)
    elif args.on_sigterm == "ignore":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # "exit" keeps the default action: the process dies of SIGTERM, dropping what is in flight.
    loop.add_signal_handler(signal.SIGINT, stop.set)
    log("demo listening", port=port, pid=os.getpid(), on_sigterm=args.on_sigterm)

    await stop.wait()
    log("demo stopping", inflight=app.inflight)
    app.stopping = True
    server.close()  # stop accepting; requests in flight go on
    await app.idle.wait()
    for writer in list(app.connections):  # idle keep-alive connections
        writer.close()
    await server.wait_closed()
    if args.cleanup > 0:
        await asyncio.sleep(args.cleanup)
    if args.drain_report_url:
        await asyncio.to_thread(report_drained, args.drain_report_url)
    log("demo stopped", served=app.served)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m sidecar.demo", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080, help="0: any free port (logged)")
    parser.add_argument("--latency", type=float, default=0.05, help="seconds each request takes")
    parser.add_argument(
        "--on-sigterm",
        choices=BEHAVIOURS,
        default="drain",
        help="drain: stop accepting, finish in-flight requests, exit 0; exit: die at once; ignore: carry on",
    )
    parser.add_argument("--cleanup", type=float, default=0.0, help="seconds of clean-up after the last request")
    parser.add_argument("--drain-report-url", help="POST {'event': 'complete'} here when drained")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return asyncio.run(run_demo(build_parser().parse_args(argv)))


if __name__ == "__main__":
    raise SystemExit(main())
