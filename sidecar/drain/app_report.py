"""app_report: the app's own word on POST /drain — how many requests each worker has in flight, and
that it has finished. Parses and applies reports; the HTTP route only maps errors to status codes.
A report is validated in full before any of it is applied, so a bad one changes nothing."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import logging
import math
import os
import time
from collections.abc import Callable
from typing import Final

from sidecar.drain.request_starts import RequestStarts
from sidecar.exit_watch import ProcessExitWatch
from sidecar.lifecycle import Phase, Timeline
from sidecar.logs import LOGGER_NAME
from sidecar.telemetry.metrics import ShutdownMetrics
from sidecar.telemetry.report import AppActivity, TaskOutcome, WorkerActivity

DRAIN_KEYS: Final = frozenset({"inflight", "event", "worker", "pid_namespace", "tasks", "requests_started"})
# "requests_started": how many requests this worker has started since it began, a count that only
# grows (sidecar.drain.request_starts turns it into arrivals for the auto hold). Optional: older
# integrations do not send it. Bounded by the largest integer every JSON reader keeps exactly.
MAX_REQUESTS_STARTED: Final = 2**53 - 1
# "tasks": what the app's lifespan helper did with its background tasks at its shutdown (names
# that ended on their own, were cancelled, ignored their cancellation; how long it waited).
TASK_LISTS: Final = ("finished", "cancelled", "stuck")
MAX_TASK_NAMES: Final = 32  # per list; the integrations cut theirs to this
MAX_WAITED_SECONDS: Final = 86400.0
# "complete": this worker (or the app) has finished its drain; "exit": this worker is leaving on
# its own (a gunicorn worker recycled by max_requests), in any phase, and counts as finished.
EVENTS: Final = frozenset({"complete", "exit"})
# No app has a billion requests in flight; a larger number is a bug or an attack, and a 400-digit
# one would overflow the float gauge (a 500).
MAX_INFLIGHT: Final = 10**9
MAX_WORKER_ID_LENGTH: Final = 64
MAX_WORKER_PID: Final = 2**22  # Linux's pid_max ceiling
# Beyond this many distinct workers a new one is refused (429) unless an exited one can make room:
# the report, the log line and memory stay bounded whatever a client sends.
MAX_WORKERS: Final = 256
PROC_SELF_PID_NAMESPACE: Final = "/proc/self/ns/pid"
# Python refuses to convert an integer of over 4,300 digits (sys.get_int_max_str_digits), and
# json.loads then raises ValueError: valid JSON answered "not JSON". Every whole number here is far
# shorter; a longer one is read as infinity, which each key's own check refuses by name.
MAX_INTEGER_DIGITS: Final = 32

logger = logging.getLogger(LOGGER_NAME)


class DrainReportError(ValueError):
    """The body is not a drain report; the message says why (the route answers 400)."""


class TooManyWorkers(Exception):
    """A new worker id beyond MAX_WORKERS (the route answers 429); nothing was changed."""


@dataclasses.dataclass(frozen=True)
class DrainReport:
    inflight: int | None
    complete: bool
    exited: bool = False
    worker: str = ""  # "" for a report that names no worker
    pid_namespace: str | None = None  # the reporter's /proc/self/ns/pid, when it sent one
    tasks: TaskOutcome | None = None  # the background tasks at the app's shutdown, when it said
    requests_started: int | None = None  # the worker's count of requests started, when it sent one

    @property
    def pid(self) -> int | None:
        """The worker's PID, when its id is one (the integrations send their PID)."""
        return int(self.worker) if self.worker.isdigit() and 0 < int(self.worker) <= MAX_WORKER_PID else None


def _short_text(value: object) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_WORKER_ID_LENGTH and value.isascii() and value.isprintable()


def _parse_int(text: str) -> int | float:
    return int(text) if len(text) <= MAX_INTEGER_DIGITS else math.inf


def parse_drain_report(body: bytes) -> DrainReport:
    """`{"inflight": N}` and/or `{"event": "complete"|"exit"}` and/or `{"requests_started": N}`,
    optionally with `"worker"` (a PID or a short printable id), `"pid_namespace"` and `"tasks"`
    (see parse_tasks); raises DrainReportError otherwise."""
    try:
        report = json.loads(body, parse_int=_parse_int)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: "[[[[..." nested deep
        raise DrainReportError("body is not JSON") from None
    if not isinstance(report, dict) or not set(report) & {"inflight", "event", "requests_started"}:
        raise DrainReportError('expected an object with "inflight", "event" and/or "requests_started"')
    unknown = set(report) - DRAIN_KEYS
    if unknown:
        raise DrainReportError(f"unknown keys: {', '.join(sorted(unknown))}")
    inflight = report.get("inflight")
    if inflight is not None and (type(inflight) is not int or not 0 <= inflight <= MAX_INFLIGHT):
        raise DrainReportError(f'"inflight" must be a whole number from 0 to {MAX_INFLIGHT}')
    started = report.get("requests_started")
    if started is not None and (type(started) is not int or not 0 <= started <= MAX_REQUESTS_STARTED):
        raise DrainReportError(f'"requests_started" must be a whole number from 0 to {MAX_REQUESTS_STARTED}')
    event = report.get("event")
    if event is not None and event not in EVENTS:
        raise DrainReportError('"event" must be "complete" or "exit"')
    worker = report.get("worker", "")
    if type(worker) is int and 0 <= worker <= MAX_WORKER_PID:
        worker = str(worker)
    elif "worker" in report and not _short_text(worker):
        raise DrainReportError(
            f'"worker" must be a whole number from 0 to {MAX_WORKER_PID} '
            f"or printable ASCII of 1 to {MAX_WORKER_ID_LENGTH} characters"
        )
    namespace = report.get("pid_namespace")
    if namespace is not None and not _short_text(namespace):
        raise DrainReportError(f'"pid_namespace" must be printable ASCII of 1 to {MAX_WORKER_ID_LENGTH} characters')
    tasks = parse_tasks(report["tasks"]) if "tasks" in report else None
    return DrainReport(inflight, event == "complete", event == "exit", worker, namespace, tasks, started)


def parse_tasks(tasks: object) -> TaskOutcome:
    """`{"finished": [names], "cancelled": [names], "stuck": [names], "waited_seconds": S}`, every
    key optional; names printable ASCII of 1 to 64 characters, at most 32 a list."""
    if not isinstance(tasks, dict):
        raise DrainReportError('"tasks" must be an object')
    unknown = set(tasks) - {*TASK_LISTS, "waited_seconds"}
    if unknown:
        raise DrainReportError(f'unknown keys in "tasks": {", ".join(sorted(unknown))}')
    lists: dict[str, tuple[str, ...]] = {}
    for key in TASK_LISTS:
        names = tasks.get(key, [])
        if not isinstance(names, list) or len(names) > MAX_TASK_NAMES or not all(map(_short_text, names)):
            raise DrainReportError(
                f'"tasks.{key}" must be a list of at most {MAX_TASK_NAMES} names '
                f"of printable ASCII, 1 to {MAX_WORKER_ID_LENGTH} characters"
            )
        lists[key] = tuple(names)
    waited = tasks.get("waited_seconds")
    if waited is not None and (
        type(waited) not in (int, float) or not 0 <= waited <= MAX_WAITED_SECONDS  # NaN fails both
    ):
        raise DrainReportError(f'"tasks.waited_seconds" must be a number of seconds from 0 to {MAX_WAITED_SECONDS:g}')
    return TaskOutcome(lists["finished"], lists["cancelled"], lists["stuck"], None if waited is None else float(waited))


def own_pid_namespace() -> str | None:
    try:
        return os.readlink(PROC_SELF_PID_NAMESPACE)
    except OSError:
        return None


class AppReport:
    """Applies the app's reports: per-worker in-flight counts (the gauge holds their sum), and the
    drain's end once every worker that reported has finished: said complete, said exit, or was seen
    gone. A worker's exit is seen only when it reported its PID from our own PID namespace (run
    mode, or shareProcessNamespace): a pidfd then wakes the loop when it exits. Otherwise a worker
    that dies silently keeps the app's drain open, and the drain ends by another source or at the
    deadline; nothing guesses."""

    def __init__(
        self,
        *,
        metrics: ShutdownMetrics,
        report_end: Callable[[], bool],
        activity: AppActivity | None = None,
        pid_namespace: str | None = None,
        max_workers: int = MAX_WORKERS,
        on_report: Callable[[], None] = lambda: None,
    ) -> None:
        """`report_end` ends the drain with source app_report; it returns whether it did.
        `pid_namespace`: ours (default: read from /proc); reported PIDs are watched only when equal.
        `on_report`: called at each report applied (the app reports: its `complete` is awaited)."""
        self.metrics = metrics
        self.activity = AppActivity() if activity is None else activity
        self._report_end = report_end
        self._on_report = on_report
        self._pid_namespace = own_pid_namespace() if pid_namespace is None else pid_namespace
        self._max_workers = max_workers
        self._shutting_down = False
        self._exit_watches: dict[str, ProcessExitWatch] = {}
        self.requests = RequestStarts()  # the requests the app says it started: the auto hold's evidence

    def apply(self, report: DrainReport) -> bool:
        """Returns whether the report ended the drain. Raises TooManyWorkers, changing nothing."""
        workers = self.activity.workers
        worker = workers.get(report.worker)
        if worker is None:
            if len(workers) >= self._max_workers and not self._forget_one_exited():
                raise TooManyWorkers(f"more than {self._max_workers} workers reported")
            worker = workers[report.worker] = WorkerActivity()
            self._watch(report)
        self._on_report()
        if report.requests_started is not None:
            started = self.requests.update(report.worker, report.requests_started, time.monotonic())
            self.metrics.app_requests_started.inc(started)
        if report.inflight is not None and not worker.is_finished:
            worker.inflight = report.inflight
        if report.tasks is not None:
            worker.tasks = report.tasks
        if report.complete and not worker.complete:
            worker.complete, worker.complete_at, worker.inflight = True, time.time(), 0
        if report.exited:
            self._mark_exited(report.worker)
        self._counts_changed()
        return self._end_if_finished()

    def on_phase_change(self, previous: Phase, current: Phase, timeline: Timeline) -> None:
        """A Timeline listener: the count at the stop, and the peak from t0 to the drain's end."""
        reported = bool(self.activity.workers)
        if current is Phase.PRESTOP_DELAY:
            self._shutting_down = True
            self.activity.inflight_peak = self.activity.inflight if reported else None
        elif current is Phase.DRAIN:
            self.activity.inflight_at_stop = self.activity.inflight if reported else None
            self._end_if_finished()  # every worker may have finished during the prestop delay
        elif current is Phase.REPORT:
            self._shutting_down = False

    def close(self) -> None:
        for key in list(self._exit_watches):
            self._unwatch(key)

    def _counts_changed(self) -> None:
        total = self.activity.inflight
        self.metrics.app_inflight.set(total)
        if self._shutting_down:
            self.activity.inflight_peak = max(total, self.activity.inflight_peak or 0)

    def _end_if_finished(self) -> bool:
        """Workers that only exited (recycled ones, or all of them dead) do not end the drain: the
        app has said nothing; its process exit is another source's to see."""
        workers = self.activity.workers.values()
        if not any(worker.complete for worker in workers) or not all(worker.is_finished for worker in workers):
            return False
        if self.activity.complete_at is None:
            # The last word: the latest worker's completion, or now when a worker's exit finished it.
            said = [worker.complete_at for worker in workers if worker.complete_at is not None]
            self.activity.complete_at = time.time() if any(worker.exited for worker in workers) else max(said)
        return self._report_end()

    def _mark_exited(self, key: str) -> None:
        worker = self.activity.workers[key]
        worker.exited, worker.inflight = True, 0
        self._unwatch(key)

    def _forget_one_exited(self) -> bool:
        key = next((key for key, worker in self.activity.workers.items() if worker.exited), None)
        if key is not None:
            del self.activity.workers[key]
            self.requests.forget(key)
        return key is not None

    def _watch(self, report: DrainReport) -> None:
        """A pidfd for the worker's PID, when it is one of ours to see; its exit wakes the loop."""
        pid = report.pid
        if pid is None or self._pid_namespace is None or report.pid_namespace != self._pid_namespace:
            return
        try:
            watch = ProcessExitWatch(asyncio.get_running_loop(), functools.partial(self._on_exit, report.worker))
            watch.watch(pid)
        except ProcessLookupError:
            self.activity.workers[report.worker].exited = True  # gone already
            return
        except (RuntimeError, OSError):  # no loop (a synchronous caller), or no pidfd on this kernel
            return
        self._exit_watches[report.worker] = watch

    def _unwatch(self, key: str) -> None:
        watch = self._exit_watches.pop(key, None)
        if watch is not None:
            watch.close()

    def _on_exit(self, key: str) -> None:
        worker = self.activity.workers.get(key)
        if worker is None:
            return
        if not worker.complete:
            logger.info("app worker exited without reporting complete", extra={"fields": {"worker": key}})
        self._mark_exited(key)
        self._counts_changed()
        self._end_if_finished()
