from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from sidecar.telemetry.metrics import configure_prometheus_client
from tests.e2e.sidecar_process import SidecarProcess

# The sidecar makes this process-global switch once at start-up (cli.main); tests build metrics
# without the CLI, so it is made here, once, for the whole session.
configure_prometheus_client()


@pytest.fixture
def anyio_backend() -> str:
    """Async tests (`@pytest.mark.anyio`) run on asyncio, the loop the sidecar runs on."""
    return "asyncio"


@pytest.fixture
def start_sidecar() -> Iterator[Callable[..., SidecarProcess]]:
    """Start `python -m sidecar serve ARGS` on a free port; every process is killed at the end."""
    started: list[SidecarProcess] = []

    def start(*args: str, env: dict[str, str] | None = None) -> SidecarProcess:
        process = SidecarProcess.serve(*args, env=env)
        started.append(process)
        return process

    yield start
    for process in started:
        process.close()
