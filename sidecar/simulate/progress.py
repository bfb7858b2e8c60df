"""simulate's progress on stderr while it runs: one line per event of the rollout, with the time
since its start and the running request counts. Reads the rollout; changes nothing."""

from __future__ import annotations

from typing import TextIO

from sidecar.simulate.rollout import Rollout


class Progress:
    """One stderr line per event: time since start, the event, the running request counts."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.rollout: Rollout | None = None

    def __call__(self, text: str) -> None:
        rollout = self.rollout
        if rollout is None:
            return
        tally = rollout.tally
        counts = f"sent {tally.total_sent}, failed {tally.total_failed}"
        self.stream.write(f"[{rollout.clock():6.2f}s] {text:<64} {counts}\n")
        self.stream.flush()
