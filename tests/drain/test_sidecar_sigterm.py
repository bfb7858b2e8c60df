from __future__ import annotations

import signal

from sidecar.drain.sidecar_sigterm import SidecarSigterm
from sidecar.lifecycle import DrainEndSource


def test_sidecar_sigterm_sigterm_calls_back_and_is_dealt_with() -> None:
    calls: list[None] = []
    part = SidecarSigterm(lambda: calls.append(None))
    assert part.on_signal(signal.SIGTERM) is True
    assert calls == [None]


def test_sidecar_sigterm_sigint_is_left_to_the_ordinary_shutdown() -> None:
    calls: list[None] = []
    part = SidecarSigterm(lambda: calls.append(None))
    assert part.on_signal(signal.SIGINT) is False
    assert calls == []


def test_sidecar_sigterm_drain_source_is_sidecar_sigterm() -> None:
    assert SidecarSigterm(lambda: None).drain_sources == frozenset({DrainEndSource.SIDECAR_SIGTERM})
