"""How late the rehearsal itself ran, on the simulation clock: its event loop's stalls, its
kubelet's timed actions and its balancer's endpoint updates against their schedule, its load's
sends against theirs, and how long processes took to start. On a machine shared with other work
these are what a busy neighbour changes. Records only: sidecar.simulate.judgement decides what
they could have changed."""

from __future__ import annotations

import asyncio
import dataclasses
import math
import statistics
from collections.abc import Callable, Iterable
from typing import Any, Final

from sidecar.simulate.records import PodRecord

# Below this, lateness is an event loop's ordinary jitter: not recorded, and changes nothing.
NOTICEABLE_SECONDS: Final = 0.05
# The scheduled actions whose lateness is recorded.
PRESTOP_HOOK: Final = "preStop hook"
SIGKILL: Final = "SIGKILL"
ENDPOINT_UPDATE: Final = "endpoint update"
# The loop-lag monitor's period: a stall shorter than this plus NOTICEABLE_SECONDS goes unseen.
LAG_TICK_SECONDS: Final = 0.05


@dataclasses.dataclass(frozen=True)
class LateAction:
    """A scheduled action that ran late: `what` ("SIGKILL", "endpoint removal", ...) of `pod`, due
    at `due_at` (seconds since the rehearsal began), run `late_seconds` after."""

    pod: str
    what: str
    due_at: float
    late_seconds: float


@dataclasses.dataclass
class Lateness:
    stalls: list[tuple[float, float]] = dataclasses.field(default_factory=list)  # (from, to): the loop ran nothing
    actions: list[LateAction] = dataclasses.field(default_factory=list)
    sends: list[tuple[float, float]] = dataclasses.field(default_factory=list)  # (due_at, late_seconds)
    spawns: list[float] = dataclasses.field(default_factory=list)  # seconds each process took to fork and exec
    starts: list[float] = dataclasses.field(default_factory=list)  # seconds from each spawn to ready

    def action_late(self, pod: str, what: str, due_at: float, ran_at: float) -> None:
        if ran_at - due_at >= NOTICEABLE_SECONDS:
            self.actions.append(LateAction(pod, what, due_at, ran_at - due_at))

    def send_late(self, due_at: float, late_seconds: float) -> None:
        if late_seconds >= NOTICEABLE_SECONDS:
            self.sends.append((due_at, late_seconds))

    def add_records(self, records: Iterable[PodRecord]) -> None:
        """What the kubelet's records say of its own schedule: each process's start, each preStop
        hook against the deletion (the kubelet starts them at once), each SIGKILL against its due time."""
        for pod in records:
            for container in pod.containers.values():
                if container.spawn_seconds is not None:
                    self.spawns.append(container.spawn_seconds)
                if container.started_at is not None and container.ready_at is not None:
                    self.starts.append(container.ready_at - container.started_at)
                if pod.deleted_at is not None and container.hook_started_at is not None:
                    self.action_late(pod.name, PRESTOP_HOOK, pod.deleted_at, container.hook_started_at)
                if container.killed_at is not None and container.kill_due_at is not None:
                    self.action_late(pod.name, SIGKILL, container.kill_due_at, container.killed_at)

    def stalled_within(self, start: float, end: float) -> float:
        """Seconds of [start, end] in which the loop stalled."""
        return sum(max(0.0, min(end, to) - max(start, since)) for since, to in self.stalls)

    def stall_before(self, seen_at: float) -> float:
        """How much earlier than `seen_at` something the loop saw then could have happened: the
        stall it had just woken from, if any. Stalls less than two ticks apart count as one: after
        a long one the loop works through its backlog (the load catching up, say), and that shows
        as more, shorter ones."""
        since, previous_end = None, -math.inf
        for start, end in sorted(self.stalls):
            if start > seen_at:
                break
            if start - previous_end > 2 * LAG_TICK_SECONDS:
                since = start
            previous_end = end
        if since is None or seen_at - previous_end > 2 * LAG_TICK_SECONDS:
            return 0.0
        return seen_at - since

    def late_action(self, pod: str, what: str) -> LateAction | None:
        """The latest-running `what` of `pod`, if it ran late."""
        late = [action for action in self.actions if action.pod == pod and action.what == what]
        return max(late, key=lambda action: action.late_seconds, default=None)

    def sends_moved_out(self, start: float, end: float, past: float) -> list[float]:
        """How late each request due in [start, end] but sent only after `past` went."""
        return [late for due, late in self.sends if start <= due <= end and due + late > past]

    def document(self) -> dict[str, Any]:
        """`lateness` in simulate's --json."""
        by_kind: dict[str, float] = {}
        for action in self.actions:
            by_kind[action.what] = max(by_kind.get(action.what, 0.0), action.late_seconds)
        return {
            "loop": {
                "max_lag_seconds": _round(max((to - since for since, to in self.stalls), default=0.0)),
                "stalled_seconds": _round(sum(to - since for since, to in self.stalls)),
                "stalls": len(self.stalls),
            },
            "actions_max_late_seconds": {what: _round(late) for what, late in sorted(by_kind.items())},
            "load": {
                "max_late_seconds": _round(max((late for _, late in self.sends), default=0.0)),
                "requests_sent_late": len(self.sends),
            },
            "process_start": {
                "processes": len(self.spawns),
                "max_spawn_seconds": _round(max(self.spawns, default=0.0)),
                "max_seconds_to_ready": _round(max(self.starts, default=0.0)),
                "median_seconds_to_ready": _round(statistics.median(self.starts)) if self.starts else 0.0,
            },
        }


def _round(seconds: float) -> float:
    return round(seconds, 3)


async def watch_loop_lag(lateness: Lateness, clock: Callable[[], float]) -> None:
    """Until cancelled: sleep a tick and record each wake-up later than NOTICEABLE_SECONDS as a
    stall. Twenty wake-ups a second: nothing next to the rehearsal's own work."""
    while True:
        before = clock()
        await asyncio.sleep(LAG_TICK_SECONDS)
        woke = clock()
        lag = woke - before - LAG_TICK_SECONDS
        if lag >= NOTICEABLE_SECONDS:
            lateness.stalls.append((woke - lag, woke))
