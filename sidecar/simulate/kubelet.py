"""One simulated pod, run the way the kubelet runs it: containers started in order (native
sidecars first, each waited for until its startup probe passes), readiness probed on its period
and thresholds, and on deletion the termination sequence: preStop hook, SIGTERM once the hook
returns, SIGKILL at the end of the grace period, native sidecars only after the app containers.
Records what happened and when; judges nothing."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import signal
import time
from collections.abc import Callable, Coroutine, Mapping
from pathlib import Path
from typing import Any, Final

from sidecar.deadline import seconds_left
from sidecar.simulate.client import http_get
from sidecar.simulate.container import ContainerProcess, log_path, termination_log_path
from sidecar.simulate.podspec import (
    ADMIN_PORT,
    ADMIN_PORT_PLACEHOLDER,
    APP_PORT,
    POD_NAME_PLACEHOLDER,
    PORT_PLACEHOLDER,
    SIDECAR_PLACEHOLDER,
    TERMINATION_LOG_PLACEHOLDER,
    ContainerSpec,
    PodTemplate,
    filled_command,
)
from sidecar.simulate.probes import run_readiness_probe, run_startup_probe
from sidecar.simulate.records import Clock, PodRecord

# The kubelet's floor on the time a container gets after its SIGTERM, when its preStop hook used
# the whole grace period: the SIGKILL comes at the grace-period deadline or this long after the
# SIGTERM, whichever is later.
SIGTERM_MINIMUM_GRACE_SECONDS: Final = 2.0


class PodStartError(Exception):
    """A pod that could not start: a command not found, an app that exited or never listened."""


class Pod:
    """Start it, delete it, or (at the end of a run) kill whatever is left of it."""

    def __init__(
        self,
        name: str,
        template: PodTemplate,
        *,
        ports: Mapping[str, int],
        workdir: Path,
        clock: Clock,
        on_event: Callable[[str], None],
        on_readiness: Callable[[Pod, bool], None],
    ) -> None:
        self.name = name
        self.template = template
        self.ports = dict(ports)
        self.workdir = workdir / name
        self._clock = clock
        self._on_event = on_event
        self._on_readiness = on_readiness
        self._containers: dict[str, ContainerProcess] = {}
        self._started: set[str] = set()  # containers whose startup probe passed (or that have none)
        self._ready: dict[str, bool] = {}  # container -> its readiness, from its probe
        self._start_failure: str | None = None
        self._is_ready = False
        self._changed = asyncio.Event()  # a readiness or an exit changed: start() looks again
        self._is_cleaning_up = False  # kill() has run: exits are expected, and not news
        # Reapers run until their process exits (a kill ends them); probers are cancelled.
        self._reapers: set[asyncio.Task[None]] = set()
        self._probers: set[asyncio.Task[None]] = set()
        self.record = PodRecord.of_template(name, template, ports[APP_PORT], clock())

    @property
    def sidecar_url(self) -> str:
        """The pod's own sidecar, as its app reaches it; empty in a pod without one."""
        admin = self.ports.get(ADMIN_PORT)
        return "" if admin is None else f"http://127.0.0.1:{admin}"

    @property
    def is_deleted(self) -> bool:
        return self.record.deleted_at is not None

    def _event(self, text: str) -> None:
        self._on_event(f"{self.name} {text}")

    def _spawn_task(self, tasks: set[asyncio.Task[None]], coroutine: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(coroutine, name=f"{self.name}/{name}")
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    # --- start -----------------------------------------------------------------------------------

    async def start(self, timeout_seconds: float) -> None:
        """Start every container in the kubelet's order; returns once the pod is ready.
        Raises PodStartError (with what the failing container last logged)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            async with asyncio.timeout(timeout_seconds):
                for spec in self.template.sidecars:
                    await self._start_container(spec)
                    # A native sidecar must be started (its startup probe passed) before the next.
                    await self._wait_for(functools.partial(self._started.__contains__, spec.name))
                for spec in self.template.containers:
                    await self._start_container(spec)
                await self._wait_for(lambda: self._is_ready)
        except TimeoutError:
            raise PodStartError(f"{self.name}: not ready after {timeout_seconds:g}s{self._hint()}") from None
        self._event("ready")

    def _hint(self) -> str:
        app = next(c for c in self.template.containers if c.serves_traffic)
        port = self.ports[APP_PORT]
        if not any(PORT_PLACEHOLDER in arg for arg in app.argv):
            return f" (the app's command has no {PORT_PLACEHOLDER}: it must listen on 127.0.0.1:{port}, given as $PORT)"
        return f" (is the app listening on 127.0.0.1:{port}? see {log_path(self.workdir, app.name)})"

    async def _start_container(self, spec: ContainerSpec) -> None:
        argv, env = filled_command(
            spec,
            {
                PORT_PLACEHOLDER: str(self.ports[APP_PORT]),
                ADMIN_PORT_PLACEHOLDER: str(self.ports.get(ADMIN_PORT, 0)),
                TERMINATION_LOG_PLACEHOLDER: str(termination_log_path(self.workdir, spec.name)),
                POD_NAME_PLACEHOLDER: self.name,
                SIDECAR_PLACEHOLDER: self.sidecar_url,
            },
        )
        record = self.record.containers[spec.name]
        try:
            container = await ContainerProcess.start(argv, env, record, self.workdir, self._clock)
        except FileNotFoundError:
            raise PodStartError(f"{self.name}: {spec.name}: {argv[0]}: command not found") from None
        except OSError as exc:
            raise PodStartError(f"{self.name}: {spec.name}: {argv[0]}: cannot execute: {exc.strerror}") from None
        self._containers[spec.name] = container
        self._ready[spec.name] = False
        self._spawn_task(self._reapers, self._reap(spec.name), f"{spec.name}/reap")
        self._spawn_task(self._probers, self._probe(spec), f"{spec.name}/probes")

    async def _probe(self, spec: ContainerSpec) -> None:
        # As the kubelet does: no readiness probe until the startup probe has passed; a container
        # without a readiness probe is ready once started.
        exited = self._containers[spec.name].exited
        if spec.startup is not None and not await run_startup_probe(spec.startup, self.ports, exited):
            if not exited.is_set():
                self._start_failure = (
                    f"{self.name}: {spec.name}: startup probe failed {spec.startup.failure_threshold} times"
                )
                self._changed.set()
            return
        self._started.add(spec.name)
        if spec.readiness is None:
            self._set_container_ready(spec.name, True)
            return
        self._changed.set()
        await run_readiness_probe(
            spec.readiness, self.ports, exited, lambda ready: self._set_container_ready(spec.name, ready)
        )

    async def _wait_for(self, condition: Callable[[], bool]) -> None:
        """Until `condition` holds; raises PodStartError when a container exits or fails its
        startup probe on the way."""
        while not condition():
            for name, container in self._containers.items():
                if container.exited.is_set():
                    raise self._exited_while_starting(name)
            if self._start_failure is not None:
                raise PodStartError(self._start_failure)
            self._changed.clear()
            await self._changed.wait()

    async def _reap(self, name: str) -> None:
        status = await self._containers[name].reap()
        self._update_readiness()
        if self._is_cleaning_up:
            return
        if self.is_deleted:
            self._event(f"{name} exited with status {status}")
        else:
            self.record.crashes.append(f"{name} exited with status {status} before its pod was deleted")
            self._event(self.record.crashes[-1])

    def _exited_while_starting(self, container: str) -> PodStartError:
        status = self.record.containers[container].exit_status
        last_line = self._containers[container].last_log_line()
        hint = self._hint() if container == self.record.traffic_container else ""
        return PodStartError(f"{self.name}: {container} exited with status {status} while starting: {last_line}{hint}")

    def _set_container_ready(self, container: str, ready: bool) -> None:
        if self._ready.get(container) != ready:
            self._ready[container] = ready
            self._update_readiness()

    def _update_readiness(self) -> None:
        # The pod is ready when every container runs and every probed one passes its probe.
        running = all(
            name in self._containers and self.record.containers[name].exited_at is None
            for name in self.record.containers
        )
        ready = running and all(self._ready.values())
        if ready != self._is_ready:
            self._is_ready = ready
            self._on_readiness(self, ready)
        self._changed.set()

    # --- termination -----------------------------------------------------------------------------

    async def delete(self) -> None:
        """Kubernetes' termination sequence, to the end: returns when every container has exited."""
        self.record.deleted_at = self._clock()
        # The kubelet's own deadline (monotonic, as the loop's clock): the pod's, not the sidecar's budget.
        grace_deadline = time.monotonic() + self.template.grace_period_seconds
        self._event(f"deleted: grace period {self.template.grace_period_seconds:g}s")
        # Without a sequence among them: the app containers are stopped concurrently.
        await asyncio.gather(*(self._stop_container(spec, grace_deadline) for spec in self.template.containers))
        # Native sidecars only once every app container has exited, last started first.
        for spec in reversed(self.template.sidecars):
            await self._stop_container(spec, grace_deadline)
        self.record.terminated_at = self._clock()

    async def _stop_container(self, spec: ContainerSpec, grace_deadline: float) -> None:
        container = self._containers[spec.name]
        record, exited = container.record, container.exited
        if spec.pre_stop is not None and not exited.is_set():
            record.hook_started_at = self._clock()
            hook = spec.pre_stop
            result = await http_get(
                self.ports[hook.port],
                hook.path,
                timeout_seconds=seconds_left(grace_deadline),
                headers=hook.headers,
            )
            record.hook_ended_at = self._clock()
            record.hook_result = result.describe()
            waited = record.hook_ended_at - record.hook_started_at
            # A failed hook is only an event to the kubelet: the container is stopped all the same.
            self._event(f"{spec.name} preStop hook: {record.hook_result} after {waited:.2f}s")
        if not exited.is_set():
            container.send(signal.SIGTERM)
            record.signalled_at = self._clock()
            self._event(f"{spec.name} SIGTERM")
        sigkill_deadline = grace_deadline
        if record.signalled_at is not None:
            sigkill_deadline = max(grace_deadline, time.monotonic() + SIGTERM_MINIMUM_GRACE_SECONDS)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout_at(sigkill_deadline):
                await exited.wait()
        if not exited.is_set():
            container.kill()
            record.killed_at = self._clock()
            self._event(f"{spec.name} SIGKILL: still running at the end of the grace period")
            await exited.wait()

    async def kill(self) -> None:
        """The end of a run: SIGKILL what is left, reap it, stop probing."""
        self._is_cleaning_up = True
        for container in self._containers.values():
            container.kill()
        for task in self._probers:
            task.cancel()
        await asyncio.gather(*self._probers, *self._reapers, return_exceptions=True)
