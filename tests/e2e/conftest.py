from __future__ import annotations

import socket
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


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers: the worst receiver there is."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield server.getsockname()[1]
