"""The shutdown sequence: t0 -> prestop delay -> drain -> report -> done, under one absolute
deadline. Every wait is an await on an event or a timer; nothing polls. It decides what a
shutdown signal means (a native sidecar's SIGTERM excepted: drain/sidecar_sigterm); it does not
touch sockets, files or metrics itself."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Awaitable, Callable

from sidecar.deadline import wait_for_any
from sidecar.hold import Hold
from sidecar.lifecycle import (
    DRAIN_SOURCE_PRECEDENCE,
    EXITED_FIRST,
    DrainEndSource,
    Phase,
    Timeline,
    Trigger,
    decide_outcome,
    exited_during_hold,
    outranks,
)
from sidecar.logs import LOGGER_NAME

logger = logging.getLogger(LOGGER_NAME)


class ShutdownSequence:
    def __init__(
        self,
        timeline: Timeline,
        *,
        report: Callable[[Timeline], Awaitable[None]],
        sources: frozenset[DrainEndSource] = frozenset(),
    ) -> None:
        """`sources`: the drain-end sources configured besides the app's own report (settable
        until the first event); with none, and no report from the app, nothing watches the app,
        and a drain that reaches the deadline has outcome unknown."""
        self.timeline = timeline
        self._report = report
        self.sources = sources
        # The prestop hold (settable until the first event): fixed at the budget's delay unless
        # the assembly hands an auto one.
        self.hold = Hold(timeline.budget.prestop_delay_seconds, None, None)
        self.observed: dict[DrainEndSource, float] = {}  # every source's first event, for the report
        self.app_reports = False  # the app has reported on POST /drain: its `complete` is awaited
        self._app_exit: str | None = None  # why the app's exit was no drain (outcome app_exit)
        self._stop_held = False  # a /prestop call (the app's preStop hook) holds the app's stop signal
        self._start_seen = True
        self._begun = asyncio.Event()
        self._prestop_delay_over = asyncio.Event()
        self._drain_reported = asyncio.Event()
        self._interrupted = asyncio.Event()
        self._done = asyncio.Event()
        self._drain_end: tuple[DrainEndSource, float] | None = None

    # --- inputs: synchronous, idempotent, safe to call from any loop callback --------------------

    def begin(self, trigger: Trigger) -> bool:
        """Start the shutdown (t0 is now); False when it had already begun. Every /prestop call
        comes here (Trigger.PRESTOP): the caller, the app's preStop hook, holds the app's stop
        signal until the hold ends (the kubelet sends it only once the hook has returned)."""
        self._stop_held = self._stop_held or trigger is Trigger.PRESTOP
        now = time.monotonic()
        if not self.timeline.begin(trigger, now):
            return False
        self._begun.set()
        return True

    def on_signal(self, sig: signal.Signals) -> None:
        """SIGTERM/SIGINT start the shutdown. Afterwards a SIGTERM is ignored (an impatient
        orchestrator, or the kubelet repeating itself), while a SIGINT (Ctrl-C again) means
        "stop now": the report is finished and the process exits. Not after /prestop, though: a
        SIGINT then is the kubelet's stop signal (`lifecycle.stopSignal: SIGINT`), sent once the
        preStop hook returns, and the drain goes on."""
        if self.begin(Trigger.SIGNAL):
            return
        # The kubelet sends a container's stop signal after its preStop hook, never a second one
        # (https://kubernetes.io/docs/concepts/containers/container-lifecycle-hooks/, KEP-4960 for
        # stopSignal): a SIGINT after /prestop began the shutdown is that signal, not a person.
        if sig is signal.SIGINT and self.timeline.trigger is not Trigger.PRESTOP:
            logger.warning("second interrupt, finishing the report now", extra={"fields": {"signal": sig.name}})
            self._interrupted.set()
        else:
            logger.info("repeated signal ignored", extra={"fields": {"signal": sig.name}})

    @property
    def watching(self) -> frozenset[DrainEndSource]:
        """The sources that can end the drain: those configured, and the app's own report once
        the app has reported (it then says `complete` when it has finished)."""
        return self.sources | {DrainEndSource.APP_REPORT} if self.app_reports else self.sources

    def app_reporting(self) -> None:
        """The app has reported on POST /drain: from now on its `complete` (or a process source)
        ends the drain, and its listener closing (connections) does not."""
        self.app_reports = True

    def source_unavailable(self, source: DrainEndSource) -> None:
        """A configured source cannot watch after all (no process matches --watch-process): it no
        longer holds back the others, and the most precise event they have already seen (by
        DRAIN_SOURCE_PRECEDENCE, not by which came first) ends the drain."""
        self.sources = self.sources - {source}
        if self._drain_end is not None or self.timeline.phase not in (Phase.PRESTOP_DELAY, Phase.DRAIN):
            return
        best = next(
            (other for other in DRAIN_SOURCE_PRECEDENCE if other in self.observed and outranks(other, self.watching)),
            None,
        )
        if best is not None:
            self._drain_end = (best, self.observed[best])
            self._drain_reported.set()

    def report_drain_end(self, source: DrainEndSource) -> bool:
        """A source saw the app finish. It ends the drain unless a more precise source is
        watching (see DRAIN_SOURCE_PRECEDENCE) or the drain has ended already; returns whether
        it did. Every source's first event is kept in `observed` either way."""
        if self.timeline.phase not in (Phase.PRESTOP_DELAY, Phase.DRAIN):
            return False
        now = time.monotonic()
        self.observed.setdefault(source, now)
        if self._drain_end is not None or not outranks(source, self.watching):
            return False
        self._drain_end = (source, now)
        self._drain_reported.set()
        return True

    def finish_now(self, source: DrainEndSource) -> None:
        """The app is gone and nothing is left to wait for (a native sidecar's SIGTERM): begin
        now if not begun, end the drain with `source`, and skip what is left of the prestop delay.
        Begun only now, the shutdown's real start was not seen: the outcome cannot be clean."""
        if self.begin(Trigger.SIGNAL):
            self._start_seen = False
        self.report_drain_end(source)
        self._interrupted.set()

    def app_exited(self) -> None:
        """Run mode: the child exited. Before any shutdown that is a crash: the shutdown begins
        now, skips the prestop delay, and the outcome is app_exit. During the hold it is one too:
        the wrapper sends the stop signal only when the hold ends, so the app was never told."""
        if self.begin(Trigger.APP_EXIT):
            self._app_exit = EXITED_FIRST
            self._interrupted.set()
        else:
            self._note_exit_during_hold()
        self.report_drain_end(DrainEndSource.PROCESS_EXIT)

    def watched_process_exited(self) -> None:
        """serve mode (--watch-pid, --watch-process): the app's process exited. During the hold
        while a /prestop call holds its stop signal, it was never told to stop: app_exit, as in run
        mode. Without a /prestop call the kubelet may have sent the stop signal at t0 (an app
        container without the preStop hook), and its exit is its drain."""
        if self._stop_held:
            self._note_exit_during_hold()
        self.report_drain_end(DrainEndSource.PROCESS_EXIT)

    def _note_exit_during_hold(self) -> None:
        timeline = self.timeline
        if timeline.phase is Phase.PRESTOP_DELAY and self._app_exit is None:
            after_t0 = time.monotonic() - timeline.started_at
            self._app_exit = exited_during_hold(after_t0)
            fields = {"after_t0_seconds": round(after_t0, 3)}
            logger.warning("app exited during the prestop hold, before its stop signal", extra={"fields": fields})

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
        await self.hold.wait(timeline.started_at, self._interrupted)
        timeline.advance(Phase.DRAIN, time.monotonic())
        self._prestop_delay_over.set()

        await wait_for_any((self._drain_reported, self._interrupted), timeline.drain_deadline)
        source, ended_at = self._drain_outcome()
        outcome, reason = decide_outcome(
            source, watching=self.watching, app_exit=self._app_exit, start_seen=self._start_seen
        )
        timeline.end_drain(source, outcome, ended_at, reason)

        await self._report(timeline)
        timeline.advance(Phase.DONE, time.monotonic())
        self._done.set()

    def _drain_outcome(self) -> tuple[DrainEndSource, float]:
        now = time.monotonic()
        if self._drain_end is not None:
            source, reported_at = self._drain_end
            # An app may report completion before the drain phase began; the drain then lasts 0 s.
            return source, max(reported_at, self.timeline.records[Phase.DRAIN].start)
        if self._interrupted.is_set() and self._app_exit is None:
            return DrainEndSource.INTERRUPTED, now
        return DrainEndSource.DEADLINE, now
