"""The Celery app the Celery tests run (broker at $TEST_BROKER_URL): `hold(name)` runs until the
test creates the file <name> in $TEST_HOLD_DIR (a condition the test controls, not a sleep)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from celery import Celery

from sidecar.integrations.celery import connect

HOLD_SECONDS = 30.0

app = Celery("tests", broker=os.environ.get("TEST_BROKER_URL", "redis://127.0.0.1:1/0"))
app.conf.update(broker_connection_retry_on_startup=True, worker_prefetch_multiplier=1, task_time_limit=8)
connect()


@app.task
def hold(name: str) -> str:
    released = Path(os.environ["TEST_HOLD_DIR"]) / name
    deadline = time.monotonic() + HOLD_SECONDS
    while not released.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    return name
