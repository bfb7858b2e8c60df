"""Celery's side of the pod's shutdown: tasks in flight and the worker's completion reported to the
sidecar through Celery's signals, and the warm shutdown's bound checked against the budget at
start. Never delays or fails a task: reports are fire-and-forget, the one status read is bounded."""

from __future__ import annotations

import json
import os
import threading
import urllib.request
from typing import Any, Final

from sidecar.integrations import shutdown_state, usable_sidecar_url
from sidecar.integrations.events import log_to_logging
from sidecar.integrations.follower import follow_in_thread
from sidecar.integrations.reporter import DrainReporter

__all__ = ["CeleryIntegration", "connect", "warm_shutdown_problem"]

STATUS_TIMEOUT_SECONDS: Final = 1.0


def warm_shutdown_problem(task_time_limit: float | None, status: dict[str, Any]) -> str | None:
    """Why a warm shutdown (Celery's answer to SIGTERM: it waits for running tasks, with no limit
    but their `task_time_limit`) may not fit grace period - prestop delay - report reserve; None
    when it fits or the status says nothing. (`worker_soft_shutdown_timeout` bounds the cold
    shutdown, SIGQUIT, not this one.)"""
    try:
        grace, delay = status["grace_period_seconds"], status["prestop_delay_seconds"]
        room = float(grace - delay - status["report_reserve_seconds"])
    except (KeyError, TypeError):
        return None
    if task_time_limit is not None and task_time_limit <= room:
        return None
    limit = "none" if task_time_limit is None else f"{task_time_limit:g}s"
    return (
        f"celery warm shutdown may not fit the sidecar's budget: task_time_limit={limit} room={room:g}s "
        "(grace period - prestop delay - report reserve); a task still running then is SIGKILLed"
    )


class CeleryIntegration:
    """The handlers connected to Celery's signals; one per process (prefork children inherit it:
    the reporter starts afresh in each, its PID as its id)."""

    def __init__(self, url: str | None = None, token: str | None = None) -> None:
        self.url = usable_sidecar_url(url)  # None: work without the sidecar
        self.reporter = DrainReporter(self.url, token=token)
        self.inflight = 0
        self.is_shutting_down = False  # SIGTERM reached the main process (its warm shutdown)
        self._lock = threading.Lock()  # threads pools run tasks concurrently

    # --- the main process -------------------------------------------------------------------------

    def on_worker_init(self, sender: Any = None, **_: Any) -> None:
        """Before the pool starts: check the budget, follow the events, say this worker is here."""
        if self.url is None:
            return
        conf = getattr(getattr(sender, "app", None), "conf", None)
        limit = getattr(conf, "task_time_limit", None)
        self.check_budget(None if limit is None else float(limit))
        follow_in_thread(self.url, shutdown_state())
        self.reporter.set_inflight(0)  # the sidecar waits for this worker's word from now on

    def check_budget(self, task_time_limit: float | None) -> None:
        if self.url is None:
            return
        url = self.url.rstrip("/") + "/status"
        try:
            with urllib.request.urlopen(url, timeout=STATUS_TIMEOUT_SECONDS) as answer:  # noqa: S310 - the sidecar's http:// URL
                status = json.load(answer)
        except (OSError, ValueError) as exc:
            log_to_logging("sidecar status unavailable; warm shutdown not checked", level="warning", error=exc)
            return
        problem = warm_shutdown_problem(task_time_limit, status if isinstance(status, dict) else {})
        if problem is not None:
            log_to_logging(problem, level="warning")

    def on_worker_shutting_down(self, **_: Any) -> None:
        self.is_shutting_down = True

    def on_worker_shutdown(self, **_: Any) -> None:
        """After the warm shutdown: every task has ended, the pool has stopped."""
        started = self.is_shutting_down or shutdown_state().is_started
        self.reporter.set_inflight(self.inflight)
        self.reporter.report_event("complete" if started else "exit")
        self.reporter.flush()

    # --- the process that runs the task (the main one with solo or threads, a prefork child) -------

    def on_task_prerun(self, **_: Any) -> None:
        self._count(+1)

    def on_task_postrun(self, **_: Any) -> None:
        self._count(-1)

    def on_worker_process_shutdown(self, pid: int | None = None, **_: Any) -> None:
        """A prefork child leaving (at the stop, or recycled by max_tasks_per_child): it counts as
        finished; the main process says `complete`."""
        if pid is None or pid == os.getpid():
            self.reporter.report_event("exit")
            self.reporter.flush()
        else:  # dispatched in the parent, on the child's behalf: from a thread, never waited for
            reporter = DrainReporter(self.url, worker=pid)
            reporter.report_event("exit")
            reporter.close()

    def _count(self, change: int) -> None:
        with self._lock:
            self.inflight += change
            self.reporter.set_inflight(self.inflight)


_integration: CeleryIntegration | None = None


def connect(url: str | None = None, token: str | None = None) -> CeleryIntegration:
    """Connect the handlers to Celery's signals (idempotent): call it in the module that makes the
    Celery app. The sidecar at `url`, else $SHUTDOWN_SIDECAR_URL, else http://127.0.0.1:9180;
    `token` default $SHUTDOWN_SIDECAR_TOKEN."""
    global _integration  # noqa: PLW0603 - one per process: Celery's signals are process-wide
    if _integration is not None:
        return _integration
    from celery import signals  # type: ignore[import-untyped,unused-ignore]  # Celery ships no types

    integration = _integration = CeleryIntegration(url, token)
    handlers = {
        signals.worker_init: integration.on_worker_init,
        signals.worker_shutting_down: integration.on_worker_shutting_down,
        signals.worker_shutdown: integration.on_worker_shutdown,
        signals.task_prerun: integration.on_task_prerun,
        signals.task_postrun: integration.on_task_postrun,
        signals.worker_process_shutdown: integration.on_worker_process_shutdown,
    }
    for signal, handler in handlers.items():
        signal.connect(handler, weak=False)
    return integration
