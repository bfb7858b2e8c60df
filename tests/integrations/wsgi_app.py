"""The WSGI app the gunicorn tests serve: `/` answers at once; `/hold/<name>` stays in flight until
the test creates the file <name> in $TEST_HOLD_DIR (a condition the test controls, not a sleep)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sidecar.integrations.wsgi import StartResponse

HOLD_SECONDS = 30.0


def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    path: str = environ["PATH_INFO"]
    if path.startswith("/hold/"):
        released = Path(os.environ["TEST_HOLD_DIR"]) / path.removeprefix("/hold/")
        deadline = time.monotonic() + HOLD_SECONDS
        while not released.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
    body = f"{os.getpid()}\n".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
