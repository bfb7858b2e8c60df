from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Iterator

import pytest

from sidecar.signals import HANDLED_SIGNALS, SHUTDOWN_SIGNALS, hold_signals, install_signal_handlers, signal_name


def blocked() -> set[int]:
    return set(signal.pthread_sigmask(signal.SIG_BLOCK, []))


@pytest.fixture(autouse=True)
def restore_mask() -> Iterator[None]:
    """Whatever a test does to this process's signal mask is undone: children inherit it."""
    before = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    yield
    signal.pthread_sigmask(signal.SIG_SETMASK, before)


def ignore(_: object) -> None:
    return None


def send_to_main_thread(signum: int) -> None:
    """A thread-directed signal: os.kill would let the kernel pick any thread that does not block
    it, and a helper thread left by another test, without a handler, would die of it (and take
    the test process along)."""
    signal.pthread_kill(threading.main_thread().ident or 0, signum)


@pytest.mark.anyio
async def test_signals_a_real_signal_reaches_its_callback_on_the_loop() -> None:
    loop = asyncio.get_running_loop()
    received: list[tuple[int, asyncio.AbstractEventLoop]] = []
    both = asyncio.Event()

    def on_other(signum: int) -> None:
        received.append((signum, asyncio.get_running_loop()))
        if len(received) == 2:
            both.set()

    uninstall = install_signal_handlers(loop, ignore, on_other)
    try:
        send_to_main_thread(signal.SIGUSR1)
        send_to_main_thread(signal.SIGUSR2)
        await asyncio.wait_for(both.wait(), 5)
    finally:
        uninstall()
    assert sorted(signum for signum, _ in received) == [signal.SIGUSR1, signal.SIGUSR2]
    assert all(running is loop for _, running in received)


@pytest.mark.anyio
async def test_signals_held_before_the_handlers_are_delivered_once_they_are_in() -> None:
    received = asyncio.Event()
    hold_signals()
    send_to_main_thread(signal.SIGUSR1)  # blocked: pending, not lost, and not fatal
    assert signal.SIGUSR1 in signal.sigpending()
    uninstall = install_signal_handlers(asyncio.get_running_loop(), ignore, lambda _: received.set())
    try:
        await asyncio.wait_for(received.wait(), 5)
    finally:
        uninstall()


@pytest.mark.anyio
async def test_signals_the_uninstaller_restores_the_handlers_and_the_mask_from_before() -> None:
    assert signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL
    assert signal.SIGTERM not in blocked()
    uninstall = install_signal_handlers(asyncio.get_running_loop(), ignore, ignore)
    assert signal.getsignal(signal.SIGUSR1) is not signal.SIG_DFL
    uninstall()
    assert signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    # Not left blocked: a child started afterwards would inherit the block.
    assert signal.SIGTERM not in blocked()

    hold_signals()  # the sidecar's own start-up: blocked again on the way out
    uninstall = install_signal_handlers(asyncio.get_running_loop(), ignore, ignore)
    assert signal.SIGTERM not in blocked()
    uninstall()
    assert set(HANDLED_SIGNALS) <= blocked()


def test_signals_shutdown_signals_are_sigterm_sigint_and_sigquit() -> None:
    assert SHUTDOWN_SIGNALS == (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)
    assert not set(SHUTDOWN_SIGNALS) & {signal.SIGKILL, signal.SIGSTOP, signal.SIGCHLD}


def test_signals_real_time_signals_are_named_by_their_offset() -> None:
    assert signal_name(signal.SIGHUP) == "SIGHUP"
    assert signal_name(signal.SIGRTMIN + 3) == "SIGRTMIN+3"
