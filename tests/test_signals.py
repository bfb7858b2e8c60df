from __future__ import annotations

import asyncio
import os
import signal

import pytest

from sidecar.signals import SHUTDOWN_SIGNALS, install_signal_handlers


@pytest.mark.anyio
async def test_signals_a_real_signal_reaches_the_callback_on_the_loop() -> None:
    loop = asyncio.get_running_loop()
    received: list[tuple[signal.Signals, asyncio.AbstractEventLoop]] = []
    both = asyncio.Event()

    def on_signal(sig: signal.Signals) -> None:
        received.append((sig, asyncio.get_running_loop()))
        if len(received) == 2:
            both.set()

    uninstall = install_signal_handlers(loop, on_signal, (signal.SIGUSR1, signal.SIGUSR2))
    try:
        os.kill(os.getpid(), signal.SIGUSR1)
        os.kill(os.getpid(), signal.SIGUSR2)
        await asyncio.wait_for(both.wait(), 5)
    finally:
        uninstall()
    assert sorted(sig for sig, _ in received) == [signal.SIGUSR1, signal.SIGUSR2]
    assert all(isinstance(sig, signal.Signals) for sig, _ in received)
    assert all(running is loop for _, running in received)


@pytest.mark.anyio
async def test_signals_the_uninstaller_restores_the_default_handling() -> None:
    assert signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL
    uninstall = install_signal_handlers(asyncio.get_running_loop(), lambda sig: None, (signal.SIGUSR1,))
    try:
        assert signal.getsignal(signal.SIGUSR1) is not signal.SIG_DFL
    finally:
        uninstall()
    assert signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL


@pytest.mark.anyio
async def test_signals_default_to_sigterm_and_sigint() -> None:
    # Installed and removed only: SIGTERM and SIGINT are never sent to the test process.
    assert SHUTDOWN_SIGNALS == (signal.SIGTERM, signal.SIGINT)
    before = {sig: signal.getsignal(sig) for sig in SHUTDOWN_SIGNALS}
    uninstall = install_signal_handlers(asyncio.get_running_loop(), lambda sig: None)
    try:
        assert all(signal.getsignal(sig) is not handler for sig, handler in before.items())
    finally:
        uninstall()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
