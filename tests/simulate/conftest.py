"""Async tests here are `async def` with @pytest.mark.anyio, run on asyncio: the simulator is
written against asyncio's subprocess and stream APIs."""

from __future__ import annotations

import pytest


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
