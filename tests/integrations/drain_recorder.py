"""A stand-in for the sidecar's POST /drain on 127.0.0.1 (standard library, a thread): records each
report's JSON; can answer slowly, to show that nothing waits for it, or refuse a key as a sidecar
older than that key does. With `keep_alive`, it speaks HTTP/1.1 and keeps connections open, as the
sidecar does, noting which connection (the client's port) each report came on and when each
connection ended; `drop_at=N` reads the Nth request on each connection and closes the connection
without answering or recording it, as a server closing an idle connection just as a request
crossed its close."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class DrainRecorder:
    def __init__(
        self,
        hold: threading.Event | None = None,
        refused_key: str | None = None,
        *,
        keep_alive: bool = False,
        drop_at: int | None = None,
    ) -> None:
        self.reports: list[dict[str, Any]] = []
        self.ports: list[int] = []  # the client port each report came from: one per connection
        self.ended: list[int] = []  # the client ports of connections that ended
        self.dropped = 0
        self.refused: list[dict[str, Any]] = []  # reports answered 400 for `refused_key`
        self.hold = hold  # while not set, every answer waits (a slow sidecar)
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1" if keep_alive else "HTTP/1.0"
            requests_here = 0

            def handle(self) -> None:
                super().handle()
                recorder.ended.append(self.client_address[1])

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                self.requests_here += 1
                if self.requests_here == drop_at:
                    recorder.dropped += 1
                    self.close_connection = True
                    return
                if recorder.hold is not None:
                    recorder.hold.wait(10)
                report = {"path": self.path, **json.loads(body)}
                if refused_key is not None and refused_key in report:
                    recorder.refused.append(report)  # as the sidecar's 400 for a key it does not know
                    answer = json.dumps({"error": f"unknown keys: {refused_key}"}).encode()
                    self.send_response(400)
                else:
                    recorder.reports.append(report)
                    recorder.ports.append(self.client_address[1])
                    answer = b"{}"
                    self.send_response(200)
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> DrainRecorder:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.hold is not None:
            self.hold.set()
        self.server.shutdown()
        self.server.server_close()
