"""run mode's app, as a part of the sidecar: the child started before the admin server listens,
its liveness and readiness, its stop signal when the drain begins, its SIGKILL at the drain
deadline, and its exit status as the sidecar's own. Process mechanics live in sidecar.supervisor."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from sidecar.deadline import wait_for_any
from sidecar.exit_watch import wait_until_gone
from sidecar.lifecycle import DrainEndSource, Phase, Timeline
from sidecar.logs import LOGGER_NAME
from sidecar.parts import Part, ReadinessCheck
from sidecar.supervisor import Child, install_child_signals
from sidecar.telemetry.report import Observations

logger = logging.getLogger(LOGGER_NAME)

# After the SIGKILL the reap is immediate; its exit status belongs in the report.
REAP_WAIT_SECONDS: Final = 0.1
# The shell's status for a process killed by SIGKILL, when even the reap was not seen.
EXIT_KILLED: Final = 128 + signal.SIGKILL


class AppProcess(Part):
    drain_sources = frozenset({DrainEndSource.PROCESS_EXIT})

    def __init__(
        self,
        command: Sequence[str],
        *,
        stop_signal: signal.Signals,
        timeline: Timeline,
        observations: Observations,
        on_exit: Callable[[], None],
    ) -> None:
        """`on_exit` is called once, on the loop, when the app exits (before or during a shutdown)."""
        self.child = Child(command, on_exit=self._exited)
        self.stop_signal = stop_signal
        self.timeline = timeline
        self.observations = observations
        observations.has_app_process = True
        self._on_exit = on_exit
        self._exited_event = asyncio.Event()
        self._group_task: asyncio.Task[None] | None = None  # the child exited, its group did not
        self._uninstall_signals: Callable[[], None] | None = None

    def readiness(self) -> Mapping[str, ReadinessCheck]:
        return {"app": self._check}

    def liveness(self) -> Mapping[str, ReadinessCheck]:
        return {"app": self._check}

    def _check(self) -> str | None:
        child = self.child
        if child.is_running:
            return None
        return "not started" if child.pid is None else f"exited with status {child.exit_status}"

    def start(self) -> None:
        self._uninstall_signals = install_child_signals(asyncio.get_running_loop(), self.child)
        self.child.start()

    def _exited(self, status: int) -> None:
        self.observations.app_exit_status = status
        self.observations.add_event("app exit", status=str(status))
        logger.info("app exited", extra={"fields": {"status": status, "phase": self.timeline.phase.value}})
        self._exited_event.set()
        if self.timeline.is_shutting_down and self.child.group_is_alive():
            # The app is not finished while processes of its group run on (a shell entrypoint
            # that died at its stop signal, leaving the server it started): they get the stop
            # signal too, and the drain ends when the group is empty (else SIGKILL at deadline).
            logger.warning("app exited but processes of its group still run: stop signal sent to the group")
            self.observations.errors.append("process_exit: the app's main process exited before the rest of its group")
            self.child.send_group(self.stop_signal)
            self._group_task = asyncio.get_running_loop().create_task(self._until_group_gone())
            return
        self._on_exit()

    async def _until_group_gone(self) -> None:
        """Woken by the kernel as each process left exits (a pidfd each), then looked at again (one
        may have started another); ended by the SIGKILL at the drain deadline at the latest."""
        while left_behind := self.child.left_behind():
            await wait_until_gone(left_behind)
        self._on_exit()

    def on_phase_change(self, previous: Phase, current: Phase, timeline: Timeline) -> None:
        if current is Phase.DRAIN:
            self._tell_to_stop()
        elif current is Phase.REPORT:
            self._kill_what_is_left()

    def _kill_what_is_left(self) -> None:
        """At the drain's end or deadline: the report counts what the app left behind in its group
        (daemons that ignored the stop signal), and the group is SIGKILLed with them, as promised."""
        left_behind = self.child.left_behind()
        self.observations.processes_left_behind = len(left_behind)
        if self.child.is_running:
            self.child.kill_group()
            logger.warning("app still running at the drain deadline: SIGKILL sent to its process group")
        elif left_behind:
            self.child.kill_group()
            logger.warning(
                "processes the app left behind SIGKILLed with its process group",
                extra={"fields": {"count": len(left_behind), "pids": left_behind[:10]}},
            )

    def _tell_to_stop(self) -> None:
        if self.child.is_running:
            self.child.send(self.stop_signal)
            self.observations.stop_signal = self.stop_signal.name
            self.observations.add_event("stop signal sent", signal=self.stop_signal.name)
            logger.info("stop signal sent", extra={"fields": {"signal": self.stop_signal.name, "pid": self.child.pid}})

    async def before_report(self) -> None:
        if not self._exited_event.is_set():
            await wait_for_any((self._exited_event,), time.monotonic() + REAP_WAIT_SECONDS)

    def start_fields(self) -> Mapping[str, Any]:
        return {"app_pid": self.child.pid}

    def exit_status(self) -> int:
        # The child's status, as a shell would give it; 137 when it had to be SIGKILLed.
        status = self.child.exit_status
        return EXIT_KILLED if status is None else status

    def close(self) -> None:
        if self._group_task is not None:
            self._group_task.cancel()
        if self._uninstall_signals is not None:
            self._uninstall_signals()
            self._uninstall_signals = None
