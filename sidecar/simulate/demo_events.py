"""The demo app's follower of its sidecar's shutdown events, now shared with the app integrations:
it lives in sidecar.integrations.events (standard library only), and keeps this name."""

from sidecar.integrations.events import (
    SIDECAR_URL_ENV,
    ShutdownEvents,
    address_of,
    body_lines,
    is_chunked,
    phases,
)

__all__ = ["SIDECAR_URL_ENV", "ShutdownEvents", "address_of", "body_lines", "is_chunked", "phases"]
