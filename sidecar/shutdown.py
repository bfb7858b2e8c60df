"""The shutdown sequence: t0 -> prestop delay -> drain -> report -> done, under one absolute
deadline. Every wait is an await on an event or a timer; nothing polls. It decides what a
signal means; it does not touch sockets, files or metrics itself."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Final

from sidecar.lifecycle import DrainEndSource, Phase, Timeline, Trigger, decide_outcome, outranks
from sidecar.logs import LOGGER_NAME

logger = logging.getLogger(LOGGER_NAME)

# Exit status when the watchdog had to end a process whose event loop stopped answering.
EXIT_WATCHDOG: Final = 70
# The watchdog fires this long before the kubelet's SIGKILL would.
WATCHDOG_LEAD_SECONDS: Final = 0.01


async def wait_for_any(events: tuple[asyncio.Event, ...], deadline: float) -> bool:
    """Wait until one of `events` is set or `deadline` (time.monotonic()) passes; True if an event won."""
    if any(event.is_set() for event in events):
        return True
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        done, _ = await asyncio.wait(
            waiters, timeout=max(0.0, deadline - time.monotonic()), return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        for waiter in waiters:
            waiter.cancel()
    return bool(done)


class DeadlineWatchdog:
    """Last resort, on its own thread: if the loop is stuck (a C extension, a blocked write to
    stderr), end the process just before the deadline rather than be SIGKILLed without a word.
    Ends the whole process: used by the mode that owns the process, never by library code.

    The thread is started before t0 and only armed at t0: a first thread start costs a few
    hundred microseconds, which the SIGTERM -> readiness 503 path must not pay."""

    def __init__(self) -> None:
        self._deadline = 0.0
        self._armed = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="deadline-watchdog", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def arm(self, deadline: float) -> None:
        """Fire at `deadline` (time.monotonic()) minus a small lead; only the first call counts."""
        if not self._armed.is_set():
            self._deadline = deadline
            self._armed.set()

    def _watch(self) -> None:
        self._armed.wait()
        time.sleep(max(0.0, self._deadline - WATCHDOG_LEAD_SECONDS - time.monotonic()))
        os.write(2, b'{"level":"error","msg":"watchdog: event loop did not finish before the deadline"}\n')
        os._exit(EXIT_WATCHDOG)


class ShutdownSequence:
    def __init__(
        self,
        timeline: Timeline,
        *,
        report: Callable[[Timeline], Awaitable[None]],
        sources: frozenset[DrainEndSource] = frozenset(),
        native_sidecar: bool = False,
    ) -> None:
        """`sources`: the drain-end sources configured besides the app's own report; with none,
        nothing watches the app, and a drain that reaches the deadline has outcome unknown."""
        self.timeline = timeline
        self._report = report
        self._sources = sources
        self._native_sidecar = native_sidecar
        self.observed: dict[DrainEndSource, float] = {}  # every source's first event, for the report
        self._app_exited_first = False
        self._begun = asyncio.Event()
        self._prestop_delay_over = asyncio.Event()
        self._drain_reported = asyncio.Event()
        self._interrupted = asyncio.Event()
        self._done = asyncio.Event()
        self._drain_end: tuple[DrainEndSource, float] | None = None

    # --- inputs: synchronous, idempotent, safe to call from any loop callback --------------------

    def begin(self, trigger: Trigger) -> bool:
        """Start the shutdown (t0 is now); False when it had already begun."""
        now = time.monotonic()
        if not self.timeline.begin(trigger, now):
            return False
        self._begun.set()
        return True

    def on_signal(self, sig: signal.Signals) -> None:
        """SIGTERM/SIGINT start the shutdown. Afterwards a SIGTERM is ignored (an impatient
        orchestrator, or the kubelet repeating itself), while a SIGINT (Ctrl-C again) means
        "stop now": the report is finished and the process exits.

        As a native sidecar, the kubelet sends SIGTERM only after the app containers have
        exited: it ends the drain (source sidecar_sigterm) and the report starts at once."""
        if self._native_sidecar and sig is signal.SIGTERM:
            self.begin(Trigger.SIGNAL)
            self.report_drain_end(DrainEndSource.SIDECAR_SIGTERM)
            self._interrupted.set()  # the app is gone: no prestop delay left to wait out
            return
        if self.begin(Trigger.SIGNAL):
            return
        if sig is signal.SIGINT:
            logger.warning("second interrupt, finishing the report now", extra={"fields": {"signal": sig.name}})
            self._interrupted.set()
        else:
            logger.info("repeated signal ignored", extra={"fields": {"signal": sig.name}})

    def report_drain_end(self, source: DrainEndSource) -> bool:
        """A source saw the app finish. It ends the drain unless a more precise source is
        configured (see DRAIN_SOURCE_PRECEDENCE) or the drain has ended already; returns whether
        it did. Every source's first event is kept in `observed` either way."""
        if self.timeline.phase not in (Phase.PRESTOP_DELAY, Phase.DRAIN):
            return False
        now = time.monotonic()
        self.observed.setdefault(source, now)
        if self._drain_end is not None or not outranks(source, self._sources):
            return False
        self._drain_end = (source, now)
        self._drain_reported.set()
        return True

    def app_exited(self) -> None:
        """Run mode: the child exited. Before any shutdown that is a crash: the shutdown begins
        now, skips the prestop delay, and the outcome is app_exit."""
        if self.begin(Trigger.APP_EXIT):
            self._app_exited_first = True
            self._interrupted.set()
        self.report_drain_end(DrainEndSource.PROCESS_EXIT)

    # --- observers -------------------------------------------------------------------------------

    @property
    def is_done(self) -> bool:
        return self._done.is_set()

    async def wait_prestop_delay_over(self) -> None:
        await self._prestop_delay_over.wait()

    async def wait_done(self) -> None:
        await self._done.wait()

    # --- the sequence ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Wait for t0, then drive every phase to done. Returns once the report is delivered."""
        await self._begun.wait()
        timeline = self.timeline
        # The app keeps serving while endpoint removal propagates; readiness already fails.
        await wait_for_any((self._interrupted,), timeline.prestop_delay_deadline)
        timeline.advance(Phase.DRAIN, time.monotonic())
        self._prestop_delay_over.set()

        await wait_for_any((self._drain_reported, self._interrupted), timeline.drain_deadline)
        source, ended_at = self._drain_outcome()
        outcome = decide_outcome(source, app_watched=bool(self._sources), app_exited_first=self._app_exited_first)
        timeline.end_drain(source, outcome, ended_at)

        await self._report(timeline)
        timeline.advance(Phase.DONE, time.monotonic())
        self._done.set()

    def _drain_outcome(self) -> tuple[DrainEndSource, float]:
        now = time.monotonic()
        if self._drain_end is not None:
            source, reported_at = self._drain_end
            # An app may report completion before the drain phase began; the drain then lasts 0 s.
            return source, max(reported_at, self.timeline.records[Phase.DRAIN].start)
        if self._interrupted.is_set() and not self._app_exited_first:
            return DrainEndSource.INTERRUPTED, now
        return DrainEndSource.DEADLINE, now
