"""Signal wiring: each signal is delivered to the event loop as a plain callback and nothing else
happens in signal context. What a shutdown signal means is decided by the shutdown sequence.

Every signal whose default action ends the process is caught, so that no signal ends it without
the report (the table is in the README, "Admin port under hostile input"):
- SHUTDOWN_SIGNALS start the shutdown (SIGQUIT too: it is some images' STOPSIGNAL, nginx's
  graceful stop, which the runtime sends to the container's first process).
- NOTICED_SIGNALS are logged and otherwise ignored; run mode forwards some of them to the app
  (sidecar.supervisor.FORWARDED_SIGNALS takes them over once the app is started).
- Left at their default: SIGKILL and SIGSTOP (cannot be caught); SIGSEGV, SIGBUS, SIGILL, SIGFPE,
  SIGABRT, SIGSYS and SIGTRAP (the process's own faults: nothing sound can run after them);
  SIGPIPE and SIGXFSZ are already ignored by Python; SIGCHLD, SIGCONT, SIGURG, SIGWINCH, SIGTSTP,
  SIGTTIN and SIGTTOU do not end the process.

From the parsed command line until the handlers are installed, these signals are blocked
(hold_signals), not lost: one sent while the process starts, or the instant the admin port first
accepts, is delivered once the loop can act on it."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable, Iterable
from types import FrameType
from typing import Final

SHUTDOWN_SIGNALS: Final = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)
# Real-time signals 35..63 (glibc keeps 32..34 for itself); their default action ends the process.
REALTIME_SIGNALS: Final = tuple(range(signal.SIGRTMIN, signal.SIGRTMAX + 1))
NOTICED_SIGNALS: Final[tuple[int, ...]] = (
    signal.SIGHUP,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGALRM,
    signal.SIGVTALRM,
    signal.SIGPROF,
    signal.SIGIO,
    signal.SIGPWR,
    signal.SIGSTKFLT,
    signal.SIGXCPU,
    *REALTIME_SIGNALS,
)
HANDLED_SIGNALS: Final[tuple[int, ...]] = (*SHUTDOWN_SIGNALS, *NOTICED_SIGNALS)


def signal_name(signum: int) -> str:
    """SIGHUP, or SIGRTMIN+3 for a real-time signal without a name of its own."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"SIGRTMIN+{signum - signal.SIGRTMIN}"


def hold_signals() -> set[int | signal.Signals]:
    """Block the handled signals until install_signal_handlers releases them; returns the mask
    from before, for restore_signal_mask when nothing is started after all. Called before the
    admin port is bound; threads started meanwhile (the watchdog) keep them blocked for good, so
    they are always delivered to the main thread, where the loop's handler runs."""
    return signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED_SIGNALS)


def restore_signal_mask(mask: Iterable[int]) -> None:
    """Undo hold_signals when the process is not going to serve (a bad flag, a port in use): a
    caller that goes on (a test, a library user) must not keep them blocked, nor pass the block
    on to the children it starts."""
    signal.pthread_sigmask(signal.SIG_SETMASK, mask)


def install_signal_handlers(
    loop: asyncio.AbstractEventLoop,
    on_shutdown_signal: Callable[[signal.Signals], None],
    on_other_signal: Callable[[int], None],
) -> Callable[[], None]:
    """Route SHUTDOWN_SIGNALS to `on_shutdown_signal` and NOTICED_SIGNALS to `on_other_signal` on
    the loop, then release what hold_signals blocked (a held signal is delivered now). Returns a
    function that restores the mask from before (the sidecar's is hold_signals', so from then until
    exit a signal waits instead of killing a process that is finishing anyway) and the handlers.

    loop.add_signal_handler runs the callback as a normal loop callback (the C-level handler only
    writes to a wakeup fd), so the callback may touch asyncio objects safely. The 41 noticed
    signals get a Python handler that only schedules the callback on the loop, the same in effect:
    loop.add_signal_handler checks each signal against signal.valid_signals(), 64 enum members
    made per call, and 44 calls cost about 3 ms of every start. It must run before a run-mode app
    is spawned: a child inherits the signal mask, and would start with these blocked.
    """
    for sig in SHUTDOWN_SIGNALS:
        loop.add_signal_handler(sig, on_shutdown_signal, sig)

    def notice(signum: int, frame: FrameType | None) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nothing left to tell
            loop.call_soon_threadsafe(on_other_signal, signum)

    previous = {signum: signal.signal(signum, notice) for signum in NOTICED_SIGNALS}
    held = signal.pthread_sigmask(signal.SIG_UNBLOCK, HANDLED_SIGNALS)

    def uninstall() -> None:
        # Back to the mask before: blocked again after hold_signals (the sidecar's own exit), and
        # not left blocked in a process that never held them (a library user, a test), whose
        # later children would inherit the block and never die of their SIGTERM.
        signal.pthread_sigmask(signal.SIG_SETMASK, held)
        for sig in SHUTDOWN_SIGNALS:
            loop.remove_signal_handler(sig)
        for signum, handler in previous.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)

    return uninstall
