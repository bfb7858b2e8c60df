"""A busy app worker as its sidecar sees it, for tests/benchmarks/test_reporter_benchmark.py: a
DrainReporter counting requests, driven at RATE requests a second for SECONDS, with no server of
its own. Prints one JSON line: reports sent, and the reporting thread's CPU time.

    python tests/benchmarks/reporter_worker.py URL SECONDS RATE

The reporter is whatever `sidecar` is first on sys.path (PYTHONPATH=another tree compares two)."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from sidecar.integrations.reporter import DrainReporter


def thread_cpu_seconds(native_id: int) -> float:
    """The thread's time on a CPU, from the scheduler's nanosecond count (not 10 ms ticks)."""
    with open(f"/proc/self/task/{native_id}/schedstat") as schedstat:
        return int(schedstat.read().split()[0]) / 1e9


def main() -> None:
    url, seconds, rate = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
    reporter = DrainReporter(url, counts_requests=True)
    sent = 0
    send = reporter._send

    def counted_send(*args: Any) -> str | None:  # the arguments differ between versions
        nonlocal sent
        sent += 1
        return send(*args)

    reporter._send = counted_send  # type: ignore[method-assign]
    started = time.monotonic()
    deadline = started + seconds
    interval = 1 / rate
    next_request = started
    while (now := time.monotonic()) < deadline:
        reporter.request_started()  # what SidecarMiddleware does for each request
        reporter.set_inflight(1)
        reporter.set_inflight(0)
        next_request += interval
        time.sleep(max(0.0, next_request - now))
    reporter.flush(2)
    thread = reporter._thread
    assert thread is not None
    assert thread.native_id is not None
    cpu = thread_cpu_seconds(thread.native_id)
    elapsed = time.monotonic() - started
    print(json.dumps({"reports": sent, "seconds": elapsed, "reporter_cpu_seconds": cpu, "failures": reporter.failures}))


if __name__ == "__main__":
    main()
