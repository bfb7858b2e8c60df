from __future__ import annotations

import pytest

from sidecar.telemetry.metrics import configure_prometheus_client

# The sidecar makes this process-global switch once at start-up (cli.main); tests build metrics
# without the CLI, so it is made here, once, for the whole session.
configure_prometheus_client()


@pytest.fixture
def anyio_backend() -> str:
    """Async tests (`@pytest.mark.anyio`) run on asyncio, the loop the sidecar runs on."""
    return "asyncio"
