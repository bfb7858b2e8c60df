"""The mode, chosen once from the settings: which parts the sidecar runs with.

- run (a command given): the app is our child (sidecar.app_process); its exit ends the drain.
- serve: the app is another container; --watch-pid/--watch-process watch its process
  (shared process namespace), and --native-sidecar takes our SIGTERM as the app's exit.
- either: --app-port watches the app's listener and connections.
Nothing else decides or asks which mode is running. Each part's module is imported when the part
is chosen: a mode does not pay the start-up time and memory of the parts it does not run."""

from __future__ import annotations

import dataclasses
import signal
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from sidecar.config import Settings
from sidecar.drain.arrivals import OwnListener
from sidecar.lifecycle import DrainEndSource, Timeline
from sidecar.parts import Part
from sidecar.shutdown import ShutdownSequence
from sidecar.telemetry.metrics import ShutdownMetrics
from sidecar.telemetry.report import Observations

if TYPE_CHECKING:
    from sidecar.drain.connections import ConnectionWatch


@dataclasses.dataclass(frozen=True)
class PartContext:
    """What every part may be handed: the shared state, and the sequence it reports to."""

    timeline: Timeline
    metrics: ShutdownMetrics
    observations: Observations
    sequence: ShutdownSequence
    own_listener: OwnListener = dataclasses.field(default_factory=OwnListener)

    def drain_ended(self, source: DrainEndSource) -> Callable[[], None]:
        """The one callback a drain-end source is handed to report the end."""

        def report_end() -> None:
            self.sequence.report_drain_end(source)

        return report_end


def choose_parts(settings: Settings, command: Sequence[str] | None, context: PartContext) -> list[Part]:
    parts: list[Part] = []
    if settings.watch_pid is not None or settings.watch_process is not None:
        from sidecar.drain.process import WatchedProcess

        parts.append(
            WatchedProcess(
                pid=settings.watch_pid,
                pattern=settings.watch_process,
                observations=context.observations,
                on_exit=context.sequence.watched_process_exited,
                on_unavailable=lambda: context.sequence.source_unavailable(DrainEndSource.PROCESS_EXIT),
            )
        )
    if settings.app_port is not None:
        from sidecar.drain.connections import ConnectionWatch

        parts.append(
            ConnectionWatch(
                settings.app_port,
                metrics=context.metrics,
                observations=context.observations,
                on_drained=context.drain_ended(DrainEndSource.CONNECTIONS),
                probe_sources=() if settings.node_ip is None else (settings.node_ip,),
                own_listener=context.own_listener,
            )
        )
    if settings.native_sidecar:
        from sidecar.drain.sidecar_sigterm import SidecarSigterm

        parts.append(SidecarSigterm(lambda: context.sequence.finish_now(DrainEndSource.SIDECAR_SIGTERM)))
    # Last: parts see each phase change in this order, and the others must observe the app (its
    # connections at the stop) before this one signals it.
    if command is not None:
        from sidecar.app_process import AppProcess

        parts.append(
            AppProcess(
                command,
                stop_signal=signal.Signals[settings.stop_signal],
                timeline=context.timeline,
                observations=context.observations,
                on_exit=context.sequence.app_exited,
            )
        )
    return parts


def arrival_source(parts: Sequence[Part]) -> ConnectionWatch | None:
    """The part that counts arrivals at the app port, for the auto hold (--app-port)."""
    watch = next((part for part in parts if DrainEndSource.CONNECTIONS in part.drain_sources), None)
    if watch is None:
        return None
    from sidecar.drain.connections import ConnectionWatch

    return watch if isinstance(watch, ConnectionWatch) else None
