"""gunicorn's side of the pod's shutdown, as a config module (`gunicorn -c
python:sidecar.integrations.gunicorn`, or import its hooks into your gunicorn.conf.py): each worker
reports on its own; the start warns when graceful_timeout cannot fit the sidecar's budget. It
must not block the master: every sidecar call is bounded by a short timeout."""

from __future__ import annotations

import json
import os
import urllib.request
from typing import Any, Final, Protocol

from sidecar.integrations import usable_sidecar_url
from sidecar.integrations.events import without_credentials
from sidecar.integrations.reporter import DrainReporter
from sidecar.integrations.wsgi import SidecarWSGIMiddleware

__all__ = ["budget_problem", "child_exit", "on_starting", "post_worker_init", "worker_exit"]

STATUS_TIMEOUT_SECONDS: Final = 1.0
WRAPPED_WORKERS: Final = ("SyncWorker", "ThreadWorker")  # gunicorn's sync and gthread: WSGI apps

_middleware: SidecarWSGIMiddleware | None = None  # this worker's, set after the fork


class _Log(Protocol):
    def info(self, msg: str, *args: object) -> None: ...
    def warning(self, msg: str, *args: object) -> None: ...


class _Config(Protocol):
    graceful_timeout: float | int

    def set(self, name: str, value: object) -> None: ...


class _Arbiter(Protocol):
    log: _Log
    cfg: _Config


class _Worker(Protocol):
    pid: int
    log: _Log
    cfg: _Config
    wsgi: Any


def budget_problem(graceful_timeout: float, status: dict[str, Any]) -> str | None:
    """Why graceful_timeout cannot fit in grace period - prestop delay - report reserve (the time
    the pod leaves the app after its stop signal), or None when it fits or the status says not."""
    try:
        grace, delay = status["grace_period_seconds"], status["prestop_delay_seconds"]
        room = float(grace - delay - status["report_reserve_seconds"])
    except (KeyError, TypeError):
        return None
    if graceful_timeout <= room:
        return None
    return (
        f"gunicorn graceful_timeout does not fit the sidecar's budget: graceful_timeout={graceful_timeout:g}s "
        f"room={room:g}s (grace period - prestop delay - report reserve); workers still busy then are SIGKILLed"
    )


def on_starting(server: _Arbiter) -> None:
    """In the master, once: the sidecar's budget (GET /status) against graceful_timeout. An
    unreachable sidecar is said once and changes nothing; a URL that is not http:// is said once
    and the workers then serve without the sidecar."""
    base = usable_sidecar_url()
    if base is None:
        return
    url = base.rstrip("/") + "/status"
    try:
        with urllib.request.urlopen(url, timeout=STATUS_TIMEOUT_SECONDS) as answer:  # noqa: S310 - http:// checked by the reporter
            status = json.load(answer)
    except (OSError, ValueError) as exc:
        shown = without_credentials(url)
        server.log.warning("sidecar status unavailable; graceful_timeout not checked: url=%s error=%s", shown, exc)
        return
    problem = budget_problem(float(server.cfg.graceful_timeout), status if isinstance(status, dict) else {})
    if problem is not None:
        server.log.warning(problem)


def post_worker_init(worker: _Worker) -> None:
    """In each sync or gthread worker, its app loaded: wrap it in SidecarWSGIMiddleware and start
    following the events. gunicorn drops an app's `Connection: close` (a hop-by-hop header), so
    from t0 the worker's keepalive is set to 0: gthread then closes each connection after its
    answer, and pooled clients move to other pods (the sync worker never keeps one)."""
    global _middleware  # noqa: PLW0603 - one per worker process
    if type(worker).__name__ not in WRAPPED_WORKERS:
        worker.log.info("sidecar: not a WSGI worker; wrap the ASGI app in SidecarMiddleware instead")
        return
    if not isinstance(worker.wsgi, SidecarWSGIMiddleware):
        worker.wsgi = SidecarWSGIMiddleware(worker.wsgi, at_t0=lambda: worker.cfg.set("keepalive", 0))
    _middleware = worker.wsgi
    _middleware.start()


def worker_exit(server: _Arbiter, worker: _Worker) -> None:
    """In the worker as it exits: `complete` during the pod's shutdown, else `exit` (recycled).
    gunicorn also calls it in the master for a worker already gone: child_exit covers that."""
    if _middleware is not None and os.getpid() == worker.pid:
        _middleware.finish()


def child_exit(server: _Arbiter, worker: _Worker) -> None:
    """In the master, for each worker reaped: `exit` on its behalf, so that a worker killed without a
    word (SIGKILL, the OOM killer) does not hold the drain open when the sidecar cannot see its PID
    (no shared process namespace). Sent from a thread: the master never waits for the sidecar."""
    reporter = DrainReporter(usable_sidecar_url(), worker=worker.pid)
    reporter.report_event("exit")
    reporter.close()
