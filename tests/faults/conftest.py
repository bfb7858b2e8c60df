from __future__ import annotations

import resource
from collections.abc import Callable, Iterator

import pytest

from tests.e2e.sidecar_process import SidecarProcess


@pytest.fixture(autouse=True, scope="session")
def enough_file_descriptors() -> None:
    """The hostile clients hold a couple of thousand sockets in this process."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


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
