from __future__ import annotations

import resource

import pytest


@pytest.fixture(autouse=True, scope="session")
def enough_file_descriptors() -> None:
    """The hostile clients hold a couple of thousand sockets in this process."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
