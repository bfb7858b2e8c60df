"""Integrations that make a Python app a good citizen of its pod's shutdown: the ASGI middleware
(sidecar.integrations.asgi), the lifespan helper for background tasks (.lifespan), gunicorn
(.gunicorn) and Celery (.celery). Standard library only: importing them loads none of the
sidecar's server dependencies (starlette, uvicorn, prometheus_client, opentelemetry)."""

from __future__ import annotations

import os

from sidecar.integrations.events import (
    DEFAULT_SIDECAR_URL,
    SIDECAR_URL_ENV,
    ShutdownState,
    address_of,
    log_to_logging,
    without_credentials,
)

__all__ = [
    "DEFAULT_SIDECAR_URL",
    "SIDECAR_URL_ENV",
    "ShutdownState",
    "shutdown_state",
    "sidecar_url",
    "usable_sidecar_url",
]

_state: ShutdownState | None = None
_refused_urls: set[str] = set()  # each said once per process


def sidecar_url(url: str | None = None) -> str:
    """`url`, else $SHUTDOWN_SIDECAR_URL, else http://127.0.0.1:9180."""
    return url or os.environ.get(SIDECAR_URL_ENV) or DEFAULT_SIDECAR_URL


def usable_sidecar_url(url: str | None = None) -> str | None:
    """sidecar_url(url) when it is an http:// URL with a host and a valid port; else None, after
    one warning per process: the app serves without its sidecar (a typo in $SHUTDOWN_SIDECAR_URL
    must not stop it from starting), and the integrations then do nothing sidecar-related."""
    resolved = sidecar_url(url)
    try:
        address_of(resolved)
    except ValueError:
        if resolved not in _refused_urls:
            _refused_urls.add(resolved)
            reason = "not an http:// URL with a host and a valid port"
            log_to_logging(
                "sidecar url unusable; serving without the sidecar",
                level="warning",
                url=repr(without_credentials(resolved)),
                reason=reason,
            )
        return None
    return resolved


def shutdown_state() -> ShutdownState:
    """This process's shutdown state: the one the middleware follows and the lifespan helper reads."""
    global _state  # noqa: PLW0603 - one per process, as the pod's shutdown is one
    if _state is None:
        _state = ShutdownState()
    return _state
