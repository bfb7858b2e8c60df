"""The admin port's accept loop. Accepting is cheap and setting a connection up (transport and
protocol) is not, so it accepts what is queued, then sets up the newest first, a bounded number
per event-loop turn: a probe sent in a burst of new connections is answered after a few turns,
not after every connection queued ahead of it (the kernel's queue is first in, first out). Out of
descriptors it makes room at once. asyncio's own loop set the whole queue up in arrival order,
and on EMFILE logged a traceback per failed accept and stopped accepting for a whole second. It
accepts and hands over; what a connection may do is sidecar.admin.protocol's business."""

from __future__ import annotations

import asyncio
import collections
import errno
import logging
import os
import socket
import time
from collections.abc import Callable
from typing import Final

from sidecar.admin.protocol import AdminConnections
from sidecar.logs import LOGGER_NAME

logger = logging.getLogger(LOGGER_NAME)

# Connections accepted per event-loop turn (a few microseconds each), and at most this many
# accepted and waiting to be set up: their descriptors are above the connection cap's reserve.
ACCEPT_BATCH: Final = 256
MAX_WAITING: Final = 2048
# Connections set up per event-loop turn, newest first. Between turns the ones set up evict the
# oldest idle connections past the cap, and those descriptors are closed.
SETUP_BATCH: Final = 32
# Refusals are logged at most this often, as one line with their count: a burst must not flood the log.
REFUSED_LOG_INTERVAL_SECONDS: Final = 1.0
OUT_OF_DESCRIPTORS: Final = frozenset({errno.EMFILE, errno.ENFILE})
OUT_OF_MEMORY: Final = frozenset({errno.ENOBUFS, errno.ENOMEM})
# After ENOBUFS/ENOMEM (no descriptor to give back would help) accepting resumes this much later.
MEMORY_RETRY_SECONDS: Final = 0.05


class AdminListener:
    """Accepts on `sock` (non-blocking, listening) and starts `protocol_factory()` on each connection,
    newest first. Out of descriptors, it makes room at once: the oldest connection not owed a
    response is evicted or, when none is, the oldest connection waiting to be set up is closed, or
    the oldest queued one is accepted on a spare descriptor kept for this and closed (refused);
    all counted in `connections.closed`."""

    def __init__(
        self,
        sock: socket.socket,
        protocol_factory: Callable[[], asyncio.Protocol],
        connections: AdminConnections,
    ) -> None:
        self.sock = sock
        self.protocol_factory = protocol_factory
        self.connections = connections
        self._loop = asyncio.get_running_loop()
        self._spare_fd: int | None = None
        self._refused_unlogged = 0
        self._refused_logged_at = -REFUSED_LOG_INTERVAL_SECONDS
        self._log_timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[object]] = set()
        self._waiting: collections.deque[socket.socket] = collections.deque()  # accepted, oldest first
        self._setup_scheduled = False
        self._waiting_paused = False

    def start(self) -> None:
        self._spare_fd = open_spare_fd()
        self._loop.add_reader(self.sock.fileno(), self.accept_batch)

    def close(self) -> None:
        """Stop accepting and close the listening socket; open connections are the server's."""
        self._loop.remove_reader(self.sock.fileno())
        self.sock.close()
        if self._spare_fd is not None:
            os.close(self._spare_fd)
            self._spare_fd = None
        while self._waiting:
            self._waiting.popleft().close()
        if self._log_timer is not None:
            self._log_timer.cancel()  # the count is in sidecar_admin_connections_closed_total

    def accept_batch(self) -> None:
        if self.sock.fileno() == -1:
            return  # closed since this call was scheduled
        drained = False  # the kernel's queue is empty (or accepting has to stop for now)
        for _ in range(min(ACCEPT_BATCH, MAX_WAITING - len(self._waiting))):
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                drained = True
                break
            except ConnectionAbortedError:
                continue  # reset while queued
            except OSError as exc:
                if exc.errno in OUT_OF_DESCRIPTORS:
                    self._make_room()
                elif exc.errno in OUT_OF_MEMORY:
                    self._pause(MEMORY_RETRY_SECONDS)
                else:
                    raise
                drained = True
                break  # the next turn accepts again, once the room made here is free
            conn.setblocking(False)
            self._waiting.append(conn)
        if len(self._waiting) >= MAX_WAITING:
            self._pause_until_set_up()
        elif not drained:
            # More may be queued, and the newest connection (a probe sent into the burst) behind it:
            # accept the rest first, next turn, before setting up older ones. Called, not left to the
            # reader: a full batch may have emptied the queue, and then no readiness comes again.
            self._loop.call_soon(self.accept_batch)
            return
        self._schedule_setup()

    def _schedule_setup(self) -> None:
        if self._waiting and not self._setup_scheduled:
            self._setup_scheduled = True
            self._loop.call_soon(self._set_up_newest)

    def _set_up_newest(self) -> None:
        self._setup_scheduled = False
        for _ in range(min(SETUP_BATCH, len(self._waiting))):
            task = self._loop.create_task(self._start_connection(self._waiting.pop()))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        self._schedule_setup()
        if self._waiting_paused and len(self._waiting) < MAX_WAITING:
            self._waiting_paused = False
            self._resume()

    def _pause_until_set_up(self) -> None:
        if not self._waiting_paused:
            self._waiting_paused = True
            self._loop.remove_reader(self.sock.fileno())

    async def _start_connection(self, conn: socket.socket) -> None:
        try:
            await self._loop.connect_accepted_socket(self.protocol_factory, conn)
        except OSError:
            conn.close()  # gone before it was set up

    def _make_room(self) -> None:
        if self.connections.evict_oldest():
            return  # its descriptor is free by the next turn
        if self._waiting:
            self._waiting.popleft().close()  # never served: refused, its descriptor free at once
            self._count_refused()
            return
        if self._spare_fd is None:
            self._spare_fd = open_spare_fd()  # gave up earlier; a descriptor may be free again
            if self._spare_fd is None:
                self._pause(MEMORY_RETRY_SECONDS)
                return
        os.close(self._spare_fd)
        try:
            conn, _ = self.sock.accept()
            conn.close()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            pass
        else:
            self._count_refused()
        finally:
            self._spare_fd = open_spare_fd()

    def _pause(self, seconds: float) -> None:
        self._loop.remove_reader(self.sock.fileno())
        self._loop.call_later(seconds, self._resume)

    def _resume(self) -> None:
        if self.sock.fileno() != -1:
            self._loop.add_reader(self.sock.fileno(), self.accept_batch)

    def _count_refused(self) -> None:
        self.connections.closed["refused"] += 1
        self._refused_unlogged += 1
        if self._log_timer is None:
            wait = self._refused_logged_at + REFUSED_LOG_INTERVAL_SECONDS - time.monotonic()
            self._log_timer = self._loop.call_later(max(0.0, wait), self._log_refused)

    def _log_refused(self) -> None:
        self._log_timer = None
        self._refused_logged_at = time.monotonic()
        count, self._refused_unlogged = self._refused_unlogged, 0
        logger.warning(
            "admin connections refused",
            extra={"fields": {"count": count, "reason": "out of file descriptors", "open": len(self.connections)}},
        )


def open_spare_fd() -> int | None:
    """A descriptor held only to be given up when accept() fails for want of one."""
    try:
        return os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
