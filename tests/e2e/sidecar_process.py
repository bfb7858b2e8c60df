"""A real `python -m sidecar` process for end-to-end tests: started on a free port, its JSON log
lines collected by a reader thread, waited on by condition with a deadline, never by sleep."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import httpx

from tests.e2e.process_tree import end_session

T = TypeVar("T")
START_TIMEOUT_SECONDS = 10.0


def wait_until(predicate: Callable[[], T], timeout: float, interval: float = 0.01, what: str = "condition") -> T:
    """Return the first truthy value of `predicate()`; AssertionError once `timeout` has passed."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class SidecarProcess:
    def __init__(
        self,
        args: Sequence[str],
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        prefix: Sequence[str] = (),
    ) -> None:
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("SIDECAR_")}
        full_env.update(env or {})
        self.proc = subprocess.Popen(
            [*prefix, sys.executable, "-m", "sidecar", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=full_env,
            cwd=cwd,
            start_new_session=True,  # close() kills the session: a `run` wrapper's app with it
        )
        self.lines: list[dict[str, Any]] = []
        self.raw: list[str] = []
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.port = 0

    @classmethod
    def serve(cls, *args: str, env: Mapping[str, str] | None = None, prefix: Sequence[str] = ()) -> SidecarProcess:
        """Start `serve` on a free loopback port and wait until it logs that it is ready; under
        `prefix` when given (e.g. `prlimit --nofile=256:256 --`)."""
        command = ["serve", "--host", "127.0.0.1", "--port", "0", "--termination-log", "", *args]
        process = cls(command, env=env, prefix=prefix)
        ready = process.wait_for_log(lambda line: line.get("msg") == "sidecar ready", START_TIMEOUT_SECONDS)
        process.port = int(ready["port"])
        return process

    @classmethod
    def wrapped(cls, prefix: Sequence[str], args: Sequence[str]) -> SidecarProcess:
        """The sidecar started under another command, e.g. `unshare --pid --fork` to be PID 1."""
        return cls(args, prefix=prefix)

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            text = raw.decode(errors="replace").rstrip("\n")
            with self._lock:
                self.raw.append(text)
                with contextlib.suppress(ValueError):  # a traceback line, say: kept in raw only
                    self.lines.append(json.loads(text))

    def logs(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.lines)

    def wait_for_log(self, match: Callable[[dict[str, Any]], bool], timeout: float) -> dict[str, Any]:
        def found() -> dict[str, Any] | None:
            if self.proc.poll() is not None:
                self._reader.join(timeout=1)
            hits = [line for line in self.logs() if match(line)]
            if hits:
                return hits[0]
            if self.proc.poll() is not None:
                raise AssertionError(f"sidecar exited ({self.proc.returncode}) first:\n" + "\n".join(self.raw))
            return None

        return wait_until(found, timeout, what="a log line")

    def report(self) -> dict[str, Any]:
        line = self.wait_for_log(lambda line: line.get("msg") == "shutdown report", 0)
        report: dict[str, Any] = line["report"]
        return report

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.get(self.url(path), timeout=5, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.post(self.url(path), timeout=5, **kwargs)

    def send_signal(self, sig: signal.Signals) -> float:
        """Send `sig`; returns time.monotonic() just before sending."""
        sent = time.monotonic()
        self.proc.send_signal(sig)
        return sent

    def wait(self, timeout: float) -> int:
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError(f"sidecar still running after {timeout}s:\n" + "\n".join(self.raw)) from None
        self._reader.join(timeout=2)
        return code

    def metric(self, name: str, labels: Mapping[str, str] | None = None) -> float:
        wanted = name + ("{" + ",".join(f'{k}="{v}"' for k, v in (labels or {}).items()) + "}" if labels else "")
        for line in self.get("/metrics").text.splitlines():
            series, _, value = line.rpartition(" ")
            if series == wanted:
                return float(value)
        raise AssertionError(f"no series {wanted}")

    def close(self) -> None:
        # The whole session: in run mode the app is in a process group of its own and would
        # outlive a SIGKILLed wrapper, holding our stderr pipe open.
        end_session(self.proc)
        self._reader.join(timeout=2)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        if self.proc.stderr is not None and not self._reader.is_alive():
            self.proc.stderr.close()  # closing it under a blocked reader would block here
