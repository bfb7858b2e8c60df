"""A real server process (uvicorn, hypercorn, gunicorn, a Celery worker) for the integration tests: its
output collected by a reader thread, waited on by condition with a deadline, never by sleep."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

from tests.e2e.sidecar_process import wait_until

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_SECONDS = 20.0


class AppServer:
    def __init__(self, args: Sequence[str], env: Mapping[str, str]) -> None:
        full_env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=full_env,
            cwd=ROOT,
            start_new_session=True,  # gunicorn's and celery's children are killed with their group
        )
        self.lines: list[str] = []
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            with self._lock:
                self.lines.append(raw.decode(errors="replace").rstrip("\n"))

    @property
    def output(self) -> str:
        with self._lock:
            return "\n".join(self.lines)

    def wait_for_output(self, pattern: str, timeout: float = START_TIMEOUT_SECONDS) -> re.Match[str]:
        def found() -> re.Match[str] | None:
            match = re.search(pattern, self.output)
            if match is None and self.proc.poll() is not None:
                self._reader.join(timeout=1)
                match = re.search(pattern, self.output)
                if match is None:
                    raise AssertionError(f"{self.proc.args} exited ({self.proc.returncode}):\n{self.output}")
            return match

        return wait_until(found, timeout, interval=0.02, what=repr(pattern))

    def signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout=timeout)

    def close(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)
        self._reader.join(timeout=2)
        if self.proc.stdout is not None and not self._reader.is_alive():
            self.proc.stdout.close()


def uvicorn_port(server: AppServer) -> int:
    return int(server.wait_for_output(r"Uvicorn running on http://127\.0\.0\.1:(\d+)").group(1))


def hypercorn_port(server: AppServer) -> int:
    return int(server.wait_for_output(r"Running on http://127\.0\.0\.1:(\d+)").group(1))
