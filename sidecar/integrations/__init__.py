"""Integrations that make a Python app a good citizen of its pod's shutdown: the ASGI middleware
(sidecar.integrations.asgi), the lifespan helper for background tasks (.lifespan), gunicorn
(.gunicorn) and Celery (.celery). Standard library only: importing them loads none of the
sidecar's server dependencies (starlette, uvicorn, prometheus_client, opentelemetry)."""

from __future__ import annotations

import os

from sidecar.integrations.events import DEFAULT_SIDECAR_URL, SIDECAR_URL_ENV, ShutdownState

__all__ = ["DEFAULT_SIDECAR_URL", "SIDECAR_URL_ENV", "ShutdownState", "shutdown_state", "sidecar_url"]

_state: ShutdownState | None = None


def sidecar_url(url: str | None = None) -> str:
    """`url`, else $SHUTDOWN_SIDECAR_URL, else http://127.0.0.1:9180."""
    return url or os.environ.get(SIDECAR_URL_ENV) or DEFAULT_SIDECAR_URL


def shutdown_state() -> ShutdownState:
    """This process's shutdown state: the one the middleware follows and the lifespan helper reads."""
    global _state  # noqa: PLW0603 - one per process, as the pod's shutdown is one
    if _state is None:
        _state = ShutdownState()
    return _state
