"""A demo HTTP app whose request latency and shutdown behaviour are flags: the good citizen that
drains at SIGTERM, one that exits at once, one that ignores SIGTERM, one that cleans up slowly.
Given its sidecar's URL it follows GET /events and answers `Connection: close` from t0.
simulate's default app; also used by the tests, the benchmarks and the README (as
`python -m sidecar.demo`). Standard library only, HTTP/1.1 keep-alive; imports nothing of the sidecar."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import sys
import time
import urllib.request
from collections.abc import Sequence

from sidecar.simulate.demo_events import SIDECAR_URL_ENV, ShutdownEvents, address_of

BEHAVIOURS = ("drain", "exit", "ignore")
DUAL_STACK_HOST = "::"  # as the sidecar's --host takes it


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
        # Set from t0 by the sidecar's events: shutdown has begun, the app still serves.
        self.shutdown_started = asyncio.Event()
        self.connections: set[asyncio.StreamWriter] = set()
        self.busy: set[asyncio.StreamWriter] = set()  # reading a request's body or answering it
        self.handlers: set[asyncio.Task[None]] = set()  # one per connection, until it is closed

    @property
    def is_closing_connections(self) -> bool:
        return self.stopping or self.shutdown_started.is_set()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self.handlers.add(task)
            task.add_done_callback(self.handlers.discard)
        self.connections.add(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                self.busy.add(writer)
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value.strip())
                if length:
                    await reader.readexactly(length)
                if await self.respond(writer):
                    break
                self.busy.discard(writer)
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            self.busy.discard(writer)
            self.connections.discard(writer)
            writer.close()

    async def respond(self, writer: asyncio.StreamWriter) -> bool:
        """Answer one request; True when the answer said `Connection: close`."""
        self.inflight += 1
        self.idle.clear()
        try:
            await asyncio.sleep(self.latency_seconds)
            self.served += 1
            # From t0 (or the stop), tell the client this connection ends with this response: a
            # pool then opens its next connection elsewhere instead of writing into a closing one.
            closing = self.is_closing_connections
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 3\r\nconnection: "
                + (b"close" if closing else b"keep-alive")
                + b"\r\n\r\nok\n"
            )
            await writer.drain()
            return closing
        finally:
            self.inflight -= 1
            if self.inflight == 0:
                self.idle.set()

    def close_idle_connections(self) -> None:
        """Close the connections waiting for a next request. A client may be writing one at this
        very moment (the HTTP/1.1 keep-alive race): done only at the stop, never at t0."""
        for writer in self.connections - self.busy:
            writer.close()


def report_drained(url: str) -> None:
    request = urllib.request.Request(  # noqa: S310 - the operator gives the sidecar's URL
        url, data=b'{"event": "complete"}', headers={"content-type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=2):  # noqa: S310
        pass


def dual_stack_socket(port: int) -> socket.socket:
    """'::' as the sidecar takes it: one socket for IPv6 and IPv4 (asyncio would make it IPv6
    only), or IPv4 alone where the kernel has no IPv6."""
    if socket.has_dualstack_ipv6():
        return socket.create_server((DUAL_STACK_HOST, port), family=socket.AF_INET6, dualstack_ipv6=True)
    return socket.create_server(("0.0.0.0", port))


async def run_demo(args: argparse.Namespace) -> int:
    app = DemoApp(args.latency)
    if args.host == DUAL_STACK_HOST:
        server = await asyncio.start_server(app.handle, sock=dual_stack_socket(args.port))
    else:
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
    follower = follow_sidecar_events(args.sidecar_url, app)

    await stop.wait()
    log("demo stopping", inflight=app.inflight)
    app.stopping = True
    server.close()  # stop accepting; requests in flight go on, each answered `Connection: close`
    # Whoever still holds an idle connection here was never told to leave (no events, or no t0
    # before the stop): closing it can race with the client's next request, and nothing avoids
    # that any more at this point. With events, pooled clients have left during the prestop delay.
    app.close_idle_connections()
    await app.idle.wait()
    app.close_idle_connections()  # any that went idle before they could close themselves
    if app.handlers:  # each ends once its connection is closed: none is left to be cancelled
        await asyncio.wait(app.handlers)
    await server.wait_closed()
    if follower is not None:
        follower.cancel()
    if args.cleanup > 0:
        await asyncio.sleep(args.cleanup)
    if args.drain_report_url:
        await asyncio.to_thread(report_drained, args.drain_report_url)
    log("demo stopped", served=app.served)
    return 0


def follow_sidecar_events(url: str, app: DemoApp) -> asyncio.Task[None] | None:
    """Follow the sidecar's events on this loop, beside the requests; None without a URL."""
    if not url:
        return None
    events = ShutdownEvents(url, log, started=app.shutdown_started)
    return asyncio.create_task(events.follow(), name="sidecar-events")


def sidecar_url(text: str) -> str:
    """--sidecar-url's value: empty, or an http:// URL."""
    if text:
        try:
            address_of(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m sidecar.demo", description=__doc__)
    # $HOST: simulate gives each pod its own address (its pod IP) there; plain runs stay on loopback.
    parser.add_argument(
        "--host",
        default=os.environ.get("HOST") or "127.0.0.1",
        help="default $HOST, else 127.0.0.1; '::' listens on IPv6 and IPv4 (IPv4 only where the kernel has no IPv6)",
    )
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
    parser.add_argument(
        "--sidecar-url",
        type=sidecar_url,
        default=os.environ.get(SIDECAR_URL_ENV, ""),
        help=f"follow this sidecar's GET /events and answer Connection: close from t0 (default ${SIDECAR_URL_ENV}; "
        "empty: do not)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return asyncio.run(run_demo(build_parser().parse_args(argv)))


if __name__ == "__main__":
    raise SystemExit(main())
