"""sidecar_sigterm: as a native sidecar (an init container with restartPolicy: Always), the
sidecar gets its SIGTERM only after every app container has exited, so that signal is the end of
the app's drain, and the report starts at once. It must not be used for a classic container,
which the kubelet signals together with the app.
https://kubernetes.io/docs/concepts/workloads/pods/sidecar-containers/#sidecar-containers-and-pod-lifecycle"""

from __future__ import annotations

import signal
from collections.abc import Callable

from sidecar.lifecycle import DrainEndSource
from sidecar.parts import Part


class SidecarSigterm(Part):
    drain_sources = frozenset({DrainEndSource.SIDECAR_SIGTERM})

    def __init__(self, on_sigterm: Callable[[], None]) -> None:
        self._on_sigterm = on_sigterm

    def on_signal(self, sig: signal.Signals) -> bool:
        if sig is not signal.SIGTERM:
            return False  # a SIGINT (a person at a terminal) starts an ordinary shutdown
        self._on_sigterm()
        return True
