"""Signal wiring: each signal is delivered to the event loop as a plain callback and nothing else
happens in signal context. What a signal means is decided by the shutdown sequence."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Iterable
from typing import Final

SHUTDOWN_SIGNALS: Final = (signal.SIGTERM, signal.SIGINT)


def install_signal_handlers(
    loop: asyncio.AbstractEventLoop,
    on_signal: Callable[[signal.Signals], None],
    signals: Iterable[signal.Signals] = SHUTDOWN_SIGNALS,
) -> Callable[[], None]:
    """Route `signals` to `on_signal` on the loop; returns a function that restores the defaults.

    loop.add_signal_handler runs the callback as a normal loop callback (the C-level handler only
    writes to a wakeup fd), so the callback may touch asyncio objects safely.
    """
    installed = list(signals)
    for sig in installed:
        loop.add_signal_handler(sig, on_signal, sig)

    def uninstall() -> None:
        for sig in installed:
            loop.remove_signal_handler(sig)

    return uninstall
