"""One simulated pod, run the way the kubelet runs it: containers started in order (native
sidecars first, each waited for until its startup probe passes), readiness probed at the pod's
address on its period and thresholds, and on deletion the termination sequence (in the kubelet's
order of containers: sidecar.simulate.pod_termination; each container's preStop hook, stop signal
and SIGKILL: sidecar.simulate.termination). Records what happened and when; judges nothing (a
failed start is put in words by sidecar.simulate.start_failures)."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine, Mapping
from pathlib import Path
from typing import Any, Final

from sidecar.simulate.container import ContainerProcess, termination_log_path
from sidecar.simulate.listeners import ListenerTable, listening_table
from sidecar.simulate.pod_termination import PodTermination
from sidecar.simulate.podspec import (
    ADMIN_PORT,
    ADMIN_PORT_PLACEHOLDER,
    APP_PID_PLACEHOLDER,
    APP_PORT,
    HOST_PLACEHOLDER,
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
from sidecar.simulate.start_failures import StartFailures
from sidecar.simulate.termination import MINIMUM_GRACE_SECONDS

SIGTERM_MINIMUM_GRACE_SECONDS: Final = float(MINIMUM_GRACE_SECONDS)  # its former name
# How often a starting pod's ports are checked for a listener its kubelet cannot reach.
LISTENER_CHECK_SECONDS: Final = 0.5
# One read of the machine's TCP tables per check period, for every pod of the rehearsal.
LISTENERS: Final = ListenerTable(LISTENER_CHECK_SECONDS)


class PodStartError(Exception):
    """A pod that could not start: a command not found, an app that exited or never listened."""


class PodStartTimeout(PodStartError):
    """A pod that was not ready in time: on a busy machine, possibly the machine's fault."""


class Pod:
    """Start it, delete it, or (at the end of a run) kill whatever is left of it."""

    def __init__(
        self,
        name: str,
        template: PodTemplate,
        *,
        ports: Mapping[str, int],
        address: str = "127.0.0.1",
        workdir: Path,
        clock: Clock,
        on_event: Callable[[str], None],
        on_readiness: Callable[[Pod, bool], None],
    ) -> None:
        self.name = name
        self.template = template
        self.ports = dict(ports)
        self.address = address  # the pod's IP
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
        self.record = PodRecord.of_template(name, template, ports[APP_PORT], clock(), address)
        self._failures = StartFailures(name, template, self.ports, address, self.workdir)

    @property
    def sidecar_url(self) -> str:
        """The pod's own sidecar, as its app reaches it; empty in a pod without one."""
        admin = self.ports.get(ADMIN_PORT)
        return "" if admin is None else f"http://{self.address}:{admin}"

    @property
    def is_deleted(self) -> bool:
        return self.record.deleted_at is not None

    @property
    def is_ready(self) -> bool:
        """The pod's Ready condition: every container running and passing its readiness probe."""
        return self._is_ready

    @property
    def is_gone(self) -> bool:
        """Every container has exited after the deletion: the pod and its IP no longer exist."""
        return self.record.terminated_at is not None

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
        checker = asyncio.create_task(self._check_listeners(), name=f"{self.name}/listeners")
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
            holding = self._failures.not_ready(timeout_seconds, self._started, self._ready, self._containers)
            raise PodStartTimeout(f"{self.name}: {holding}") from None
        finally:
            checker.cancel()
        # Ready, but perhaps before the shared table was read again: one look of its own (in a
        # thread, off the loop), so a pod listening at the wrong address never serves.
        problem = self._failures.listener_problem(await asyncio.to_thread(listening_table))
        if problem is not None:
            raise PodStartError(problem)
        self._event("ready")

    async def _check_listeners(self) -> None:
        # A container listening on 127.0.0.1 only is never reached by the kubelet's probes and
        # hooks or the balancer, which all go to the pod IP: in a cluster the pod would never be
        # ready (or its hook would fail). Said at once, with what cannot reach it.
        while True:
            problem = self._failures.listener_problem(await LISTENERS.current())
            if problem is not None:
                self._start_failure = problem
                self._changed.set()
                return
            await asyncio.sleep(LISTENER_CHECK_SECONDS)

    async def _start_container(self, spec: ContainerSpec) -> None:
        argv, env = filled_command(
            spec,
            {
                PORT_PLACEHOLDER: str(self.ports[APP_PORT]),
                HOST_PLACEHOLDER: self.address,
                ADMIN_PORT_PLACEHOLDER: str(self.ports.get(ADMIN_PORT, 0)),
                TERMINATION_LOG_PLACEHOLDER: str(termination_log_path(self.workdir, spec.name)),
                POD_NAME_PLACEHOLDER: self.name,
                SIDECAR_PLACEHOLDER: self.sidecar_url,
                APP_PID_PLACEHOLDER: self._app_pid(),
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

    def _app_pid(self) -> str:
        """The app container's PID once it has started (containers start in order), else empty."""
        app = self._containers.get(self.record.traffic_container)
        return "" if app is None else str(app.pid)

    async def _probe(self, spec: ContainerSpec) -> None:
        # As the kubelet does: no readiness probe until the startup probe has passed; a container
        # without a readiness probe is ready once started.
        exited = self._containers[spec.name].exited
        if spec.startup is not None and not await run_startup_probe(spec.startup, self.ports, exited, self.address):
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
            spec.readiness, self.ports, exited, lambda ready: self._set_container_ready(spec.name, ready), self.address
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
        hint = self._failures.app_hint() if container == self.record.traffic_container else ""
        return PodStartError(f"{self.name}: {container} exited with status {status} while starting: {last_line}{hint}")

    def _set_container_ready(self, container: str, ready: bool) -> None:
        record = self.record.containers[container]
        if ready and record.ready_at is None:
            record.ready_at = self._clock()
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
            if not self.is_deleted:
                self.record.readiness_changes.append((self._clock(), ready))
            self._on_readiness(self, ready)
        self._changed.set()

    # --- termination -----------------------------------------------------------------------------

    async def delete(self) -> None:
        """Kubernetes' termination sequence, to the end: returns when every container has exited."""
        self.record.deleted_at = self._clock()
        self._event(f"deleted: grace period {self.template.grace_period_seconds:g}s")
        await PodTermination(
            self.name, self.template, self._containers, self.address, self.ports, self._clock, self._event
        ).run()
        self.record.terminated_at = self._clock()

    async def kill(self) -> None:
        """The end of a run: SIGKILL what is left, reap it, stop probing."""
        self._is_cleaning_up = True
        for container in self._containers.values():
            container.kill()
        for task in self._probers:
            task.cancel()
        await asyncio.gather(*self._probers, *self._reapers, return_exceptions=True)
