"""The app's reports to its sidecar's POST /drain, fire-and-forget: the request path only stores the
latest counts (requests in flight, and requests started, which the auto hold takes as arrivals); a
thread of this process sends them, at most ten times a second (the last values always sent), on one
kept connection (sidecar.integrations.report_connection), each try bounded by a short timeout. A
sidecar that is down or slow delays no request."""

from __future__ import annotations

import json
import logging
import os
import threading
import weakref
from collections.abc import Mapping
from typing import Final, Literal

from sidecar.integrations.events import address_of, log_to_logging
from sidecar.integrations.report_connection import TIMEOUT_SECONDS, ReportConnection

# What the sidecar takes in a report's "tasks" (sidecar.drain.app_report): names longer or more
# numerous than this are cut here rather than refused there.
MAX_TASK_NAMES: Final = 32
MAX_TASK_NAME_LENGTH: Final = 64
MIN_INTERVAL_SECONDS: Final = 0.1  # coalesced: at most ten reports a second
TOKEN_ENV: Final = "SHUTDOWN_SIDECAR_TOKEN"  # noqa: S105 - a variable name: holds the --admin-token
PROC_SELF_PID_NAMESPACE: Final = "/proc/self/ns/pid"
# The key of the count of requests started. A sidecar older than it answers 400 naming it as an
# unknown key; the reporter then stops sending it rather than lose every report.
REQUESTS_STARTED: Final = "requests_started"

# The kubelet's HTTP probes send `User-Agent: kube-probe/<version>` ("kube-probe/1.31") unless
# the probe's httpHeaders override it
# (https://kubernetes.io/docs/tasks/configure-pod-container/configure-liveness-readiness-startup-probes/,
# "HTTP probes"). A probe is not traffic: counted, it would keep a probed pod "busy" in the hold.
KUBE_PROBE_AGENT: Final = "kube-probe/"

Event = Literal["complete", "exit"]
logger = logging.getLogger("sidecar.integrations")
_reporters: weakref.WeakSet[DrainReporter] = weakref.WeakSet()


def pid_namespace() -> str | None:
    """Sent with the PID, so the sidecar watches the PID only when it is the same process to it."""
    try:
        return os.readlink(PROC_SELF_PID_NAMESPACE)
    except OSError:
        return None


class DrainReporter:
    """One per process (a gunicorn or uvicorn worker reports on its own, its PID as its id).
    The sending thread starts at the first report, in the process that makes it: a reporter made
    before a fork starts afresh in the child."""

    def __init__(
        self,
        url: str | None,
        *,
        token: str | None = None,
        worker: str | int | None = None,
        counts_requests: bool = False,
    ) -> None:
        """`url`: the sidecar's base URL (ValueError unless http://), or None for no sidecar: the
        reports then go nowhere. `worker`: the id sent with each report; default this process's PID.
        `counts_requests`: the reports carry the count of requests started (`request_started()`),
        from 0 in the first one (the sidecar's baseline for this worker)."""
        # None: no sidecar to send to; nothing starts a thread then.
        self._address = None if url is None else address_of(url, "/drain")
        token = os.environ.get(TOKEN_ENV) if token is None else token
        self._headers = {"Content-Type": "application/json"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        self._fixed_worker = worker
        self.counts_requests = counts_requests
        self.failures = 0
        self._reset()
        _reporters.add(self)

    def _reset(self) -> None:
        self._worker: str | int = os.getpid() if self._fixed_worker is None else self._fixed_worker
        self._namespace = pid_namespace() if self._fixed_worker is None else None
        self._inflight: int | None = None
        self._started = 0  # requests started by this process: only grows
        self._event: Event | None = None
        self._tasks: Mapping[str, object] | None = None
        self._version = 0  # bumped by each change; the sender records the last it has tried
        self._tried = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._tried_changed = threading.Condition()
        self._thread: threading.Thread | None = None
        # A forked child must not write on the parent's socket: it closes its copy (the parent's
        # connection stays open) and opens its own.
        connection = getattr(self, "_connection", None)
        if connection is not None:
            connection.close()
        self._connection = None if self._address is None else ReportConnection(*self._address[:2])
        self._sent_inflight: int | None = None
        self._sent_started: int | None = None

    # --- the request path: no lock, no I/O -------------------------------------------------------

    def set_inflight(self, inflight: int) -> None:
        self._inflight = inflight
        self._version += 1
        if not self._wake.is_set():
            self._start()
            self._wake.set()

    def request_started(self) -> None:
        """One more request started (not a kubelet probe: the caller decides). A report goes out
        (coalesced) even when the in-flight count ends where it was. Callers on several threads
        call it under their own lock, as they do set_inflight."""
        self._started += 1
        self._version += 1
        if not self._wake.is_set():
            self._start()
            self._wake.set()

    def report_event(self, event: Event, *, tasks: Mapping[str, object] | None = None) -> None:
        """`tasks`: what the lifespan helper did with the background tasks, sent with the event."""
        self._event, self._tasks = event, tasks
        self._version += 1
        self._start()
        self._wake.set()

    # --- shutdown --------------------------------------------------------------------------------

    def flush(self, timeout_seconds: float = TIMEOUT_SECONDS) -> bool:
        """Wait (blocking, at most `timeout_seconds`: by default one try's timeout, so a sidecar
        that accepts and never answers holds the app's exit no longer than that) until everything
        reported so far has been tried; True when it has. For the end of a worker: the thread is a
        daemon. At once when there is no sidecar."""
        if self._address is None:
            return True
        wanted = self._version
        with self._tried_changed:
            return self._tried_changed.wait_for(lambda: self._tried >= wanted, timeout_seconds)

    def close(self) -> None:
        self._stop.set()
        self._wake.set()

    # --- the sending thread ----------------------------------------------------------------------

    def _start(self) -> None:
        if self._thread is None and self._address is not None and self._connection is not None:
            self._thread = threading.Thread(
                target=self._run, args=(self._connection, self._address[2]), name="sidecar-drain-reporter", daemon=True
            )
            self._thread.start()

    def _run(self, connection: ReportConnection, path: str) -> None:
        try:
            self._send_until_closed(connection, path)
        finally:
            connection.close()

    def _send_until_closed(self, connection: ReportConnection, path: str) -> None:
        warned = False
        while True:
            # close() may have come before the last clear(): no wait then. Waiting, the kept
            # connection is closed once idle (no report for IDLE_SECONDS).
            if not self._stop.is_set() and not self._wake.wait(connection.seconds_until_idle()):
                connection.close_if_idle()
                continue
            self._wake.clear()
            if self._stop.is_set() and self._tried >= self._version:
                return
            version, report = self._version, self._report()
            if report is not None:
                problem = self._send(connection, path, report)
                if problem is not None:
                    self._sent_inflight = self._sent_started = None  # not received: the next report carries them again
                    self.failures += 1
                    if not warned:
                        log_to_logging("sidecar drain report failed", level="warning", error=problem)
                        warned = True
            with self._tried_changed:
                self._tried = version
                self._tried_changed.notify_all()
            # Coalescing: changes meanwhile wake the next round, which sends the latest value.
            self._stop.wait(MIN_INTERVAL_SECONDS)

    def _send(self, connection: ReportConnection, path: str, report: dict[str, object]) -> str | None:
        problem = connection.post(path, encode(report), self._headers)
        if problem is not None and REQUESTS_STARTED in report and REQUESTS_STARTED in problem:
            # A sidecar older than the count refuses the key: the same report again without it.
            self.counts_requests = False
            log_to_logging("sidecar does not take request counts; not sending them", level="warning", error=problem)
            del report[REQUESTS_STARTED]
            problem = (
                connection.post(path, encode(report), self._headers)
                if set(report) - {"worker", "pid_namespace"}
                else None
            )
        return problem

    def _report(self) -> dict[str, object] | None:
        report: dict[str, object] = {"worker": self._worker}
        if self._namespace is not None:
            report["pid_namespace"] = self._namespace
        inflight, event, tasks = self._inflight, self._event, self._tasks
        self._event = self._tasks = None
        started = self._started if self.counts_requests else None
        is_new_start = started is not None and started != self._sent_started
        if is_new_start:
            report[REQUESTS_STARTED] = started
        # With a new count, the in-flight count too: a sidecar older than the count then names the
        # unknown key (it refuses a report without "inflight" or "event" in other words).
        if inflight is not None and (inflight != self._sent_inflight or event is not None or is_new_start):
            report["inflight"] = inflight
        if event is not None:
            report["event"] = event
            if tasks is not None:
                report["tasks"] = tasks_for_report(tasks)
        if len(report) == 1 + (self._namespace is not None):
            return None  # nothing new
        self._sent_inflight, self._sent_started = inflight, started
        return report


def encode(report: dict[str, object]) -> bytes:
    return json.dumps(report, separators=(",", ":")).encode()


def is_kubelet_probe(user_agent: str) -> bool:
    return user_agent.startswith(KUBE_PROBE_AGENT)


def tasks_for_report(tasks: Mapping[str, object]) -> dict[str, object]:
    """The lifespan helper's result in the shape the sidecar accepts: each list at most 32 names of
    printable ASCII (others replaced by "?"), 1 to 64 characters."""
    document: dict[str, object] = {}
    for key, value in tasks.items():
        if isinstance(value, list | tuple):
            document[key] = [task_name(str(name)) for name in value[:MAX_TASK_NAMES]]
        else:
            document[key] = value
    return document


def task_name(name: str) -> str:
    printable = "".join(c if c.isascii() and c.isprintable() else "?" for c in name[:MAX_TASK_NAME_LENGTH])
    return printable or "?"


def _after_fork_in_child() -> None:
    # A forked child has the parent's reporters but not their threads, and a PID of its own.
    for reporter in list(_reporters):
        reporter._reset()


os.register_at_fork(after_in_child=_after_fork_in_child)
