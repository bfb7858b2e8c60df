"""The admin port's accept loop: a bounded batch of connections per event-loop turn, and no pause
when descriptors run out. asyncio's own loop takes up to `backlog` connections in one turn, before
any eviction can free a descriptor, then on EMFILE logs a traceback per failed accept and stops
accepting for a whole second: a kubelet probe with a 1 s timeout fails. It accepts and hands over;
what a connection may do is sidecar.admin.protocol's business."""

from __future__ import annotations

import asyncio
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

# Connections accepted per event-loop turn. Between turns the connections accepted are set up and
# the ones they evict are closed, so descriptors in flight stay a few batches above the cap (which
# leaves room for twice that: protocol.RESERVED_FDS). 2,000 queued take about 60 turns.
ACCEPT_BATCH: Final = 32
# Refusals are logged at most this often, as one line with their count: a burst must not flood the log.
REFUSED_LOG_INTERVAL_SECONDS: Final = 1.0
OUT_OF_DESCRIPTORS: Final = frozenset({errno.EMFILE, errno.ENFILE})
OUT_OF_MEMORY: Final = frozenset({errno.ENOBUFS, errno.ENOMEM})
# After ENOBUFS/ENOMEM (no descriptor to give back would help) accepting resumes this much later.
MEMORY_RETRY_SECONDS: Final = 0.05


class AdminListener:
    """Accepts on `sock` (non-blocking, listening) and starts `protocol_factory()` on each connection.
    Out of descriptors, it makes room at once: the oldest connection not owed a response is evicted
    or, when none is, the oldest queued connection is accepted on a spare descriptor kept for this
    and closed (refused); both counted in `connections.closed`."""

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
        if self._log_timer is not None:
            self._log_timer.cancel()  # the count is in sidecar_admin_connections_closed_total

    def accept_batch(self) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue  # reset while queued
            except OSError as exc:
                if exc.errno in OUT_OF_DESCRIPTORS:
                    self._make_room()
                elif exc.errno in OUT_OF_MEMORY:
                    self._pause(MEMORY_RETRY_SECONDS)
                else:
                    raise
                return  # the next turn accepts again, once the room made here is free
            conn.setblocking(False)
            task = self._loop.create_task(self._start_connection(conn))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _start_connection(self, conn: socket.socket) -> None:
        try:
            await self._loop.connect_accepted_socket(self.protocol_factory, conn)
        except OSError:
            conn.close()  # gone before it was set up

    def _make_room(self) -> None:
        if self.connections.evict_oldest():
            return  # its descriptor is free by the next turn
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
            self.connections.closed["refused"] += 1
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
