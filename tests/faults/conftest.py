from __future__ import annotations

import pytest

from sidecar.admin.protocol import raise_fd_limit


@pytest.fixture(autouse=True, scope="session")
def enough_file_descriptors() -> None:
    """The hostile clients hold a couple of thousand sockets in this process: the same raise to the
    hard limit the sidecar makes for itself at start."""
    raise_fd_limit()
