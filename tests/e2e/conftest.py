from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.e2e.sidecar_process import SidecarProcess


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
