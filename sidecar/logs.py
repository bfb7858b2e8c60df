"""Log lines: one JSON object per line by default (what log pipelines parse), or key=value text
for humans. Callers log a lower-case event phrase and put context in `extra={"fields": {...}}`.
Lines are written by a thread of their own: a stalled stderr pipe never blocks the event loop."""

from __future__ import annotations

import json
import logging
import queue
import sys
import threading
import time
from typing import Any, Final, TextIO

LOGGER_NAME: Final = "sidecar"
QUEUE_CAPACITY: Final = 1024  # lines; the sidecar logs a handful per shutdown
# At exit, pending lines get this long to reach a stalled pipe; the watchdog bounds it anyway.
EXIT_FLUSH_SECONDS: Final = 0.5


def fields_of(record: logging.LogRecord) -> dict[str, Any]:
    fields = getattr(record, "fields", None)
    return dict(fields) if isinstance(fields, dict) else {}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": round(record.created, 6),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        line.update(fields_of(record))
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, separators=(",", ":"), default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created)) + f".{int(record.msecs):03d}"
        context = " ".join(f"{key}={_text_value(value)}" for key, value in fields_of(record).items())
        text = f"{stamp} {record.levelname.lower():7} {record.getMessage()}" + (f" {context}" if context else "")
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


def _text_value(value: object) -> str:
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"), default=str)
    return str(value)


class BackgroundStreamHandler(logging.Handler):
    """Formats on the caller's thread, writes on its own. The container runtime reads stderr
    through a pipe; when the reader stalls and the pipe fills, a write blocks, and on the event
    loop that would stall probes and the shutdown itself. Bounded: once QUEUE_CAPACITY lines
    wait, new ones are dropped and counted, and a line saying how many follows when writing
    resumes."""

    def __init__(self, stream: TextIO, capacity: int = QUEUE_CAPACITY) -> None:
        super().__init__()
        self.stream = stream
        self._lines: queue.Queue[str | threading.Event] = queue.Queue(capacity)
        self._dropped = 0  # only the writer thread resets it; a lost increment under a race is harmless
        self._writer = threading.Thread(target=self._write_forever, name="log-writer", daemon=True)
        self._writer.start()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:  # logging must never raise into the caller
            self.handleError(record)
            return
        try:
            self._lines.put_nowait(line)
        except queue.Full:
            self._dropped += 1

    def _write_forever(self) -> None:
        while True:
            item = self._lines.get()
            if isinstance(item, threading.Event):  # a flush marker: every line before it is written
                item.set()
                continue
            dropped, self._dropped = self._dropped, 0
            text = item + "\n"
            if dropped:
                text = json.dumps({"level": "warning", "logger": LOGGER_NAME, "msg": "log lines dropped",
                                   "count": dropped}) + "\n" + text  # fmt: skip
            try:
                self.stream.write(text)
                self.stream.flush()
            except (OSError, ValueError):  # stderr closed: nowhere left to write
                return

    def flush(self, timeout: float = EXIT_FLUSH_SECONDS) -> bool:  # type: ignore[override]
        """Wait up to `timeout` for the lines queued so far to be written; False if they were
        not (a stalled or full pipe). logging.shutdown() calls this at exit."""
        deadline = time.monotonic() + timeout
        written = threading.Event()
        try:
            self._lines.put(written, timeout=timeout)
        except queue.Full:
            return False
        return written.wait(max(0.0, deadline - time.monotonic()))


def configure_logging(log_format: str, level: str) -> None:
    """Route our logs and uvicorn's to stderr in one format; uvicorn's access log stays off."""
    handler = BackgroundStreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger(LOGGER_NAME).setLevel(level.upper())
    # uvicorn logs its own start-up chatter at info; only its warnings matter next to ours.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).setLevel(logging.WARNING)
