"""What a mode brings to the sidecar, as parts. Each part owns one concern (the app's process in
run mode, the app's port, a watched process, the native sidecar's SIGTERM) and plugs into the
same few hooks; the mode is chosen once, by choosing the parts (sidecar.modes), and nothing
asks later which mode it is in. A part never decides the outcome: it reports what it saw."""

from __future__ import annotations

import signal
from collections.abc import Callable, Mapping
from typing import Any

from sidecar.lifecycle import DrainEndSource, Phase, Timeline

ReadinessCheck = Callable[[], str | None]  # None when passing, else why not
NO_CHECKS: Mapping[str, ReadinessCheck] = {}


class Part:
    """Every hook does nothing unless a part overrides it."""

    # The drain-end sources this part can report; the sequence ranks its sources by them.
    drain_sources: frozenset[DrainEndSource] = frozenset()

    def readiness(self) -> Mapping[str, ReadinessCheck]:
        return NO_CHECKS

    def liveness(self) -> Mapping[str, ReadinessCheck]:
        return NO_CHECKS

    def start(self) -> None:
        """Before the admin server listens. May raise SpawnError (run mode: the app cannot start)."""

    async def run(self) -> None:
        """Background work for the life of the sidecar; cancelled when it exits."""

    def on_signal(self, sig: signal.Signals) -> bool:
        """A shutdown signal arrived; True when this part has dealt with it in full."""
        return False

    def on_phase_change(self, previous: Phase, current: Phase, timeline: Timeline) -> None:
        """A Timeline listener."""

    async def before_report(self) -> None:
        """The last chance to observe something the report should hold; bounded by the part."""

    def start_fields(self) -> Mapping[str, Any]:
        """Extra fields for the start-up log line."""
        return {}

    def exit_status(self) -> int | None:
        """The sidecar's exit status, when this part decides it (run mode: the app's)."""
        return None

    def close(self) -> None:
        """Release what start() or a phase action took (signal handlers, file descriptors)."""
