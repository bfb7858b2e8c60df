"""One simulated pod, run the way the kubelet runs it: containers started in order (native
sidecars first, each waited for until its startup probe passes), readiness probed at the pod's
address on its period and thresholds, and on deletion the termination sequence (each container's
preStop hook, then its stop signal, then SIGKILL: sidecar.simulate.termination), native sidecars
stopped only after the app containers. Records what happened and when; judges nothing."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Coroutine, Mapping
from pathlib import Path
from typing import Any, Final

from sidecar.simulate.container import ContainerProcess, log_path, termination_log_path
from sidecar.simulate.listeners import unreachable_listeners, unreachable_message
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
from sidecar.simulate.termination import MINIMUM_GRACE_SECONDS, run_pre_stop_hook, stop_container

SIGTERM_MINIMUM_GRACE_SECONDS: Final = float(MINIMUM_GRACE_SECONDS)  # its former name
# How often a starting pod's ports are checked for a listener its kubelet cannot reach.
LISTENER_CHECK_SECONDS: Final = 0.5


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
            raise PodStartError(f"{self.name}: not ready after {timeout_seconds:g}s{self._hint()}") from None
        finally:
            checker.cancel()
        self._event("ready")

    def _hint(self) -> str:
        app = next(c for c in self.template.containers if c.serves_traffic)
        port = self.ports[APP_PORT]
        if not any(PORT_PLACEHOLDER in arg for arg in app.argv):
            return (
                f" (the app's command has no {PORT_PLACEHOLDER}: it must listen on {self.address}:{port}, the pod's "
                "address and port, given as $HOST and $PORT)"
            )
        return f" (is the app listening on {self.address}:{port}? see {log_path(self.workdir, app.name)})"

    async def _check_listeners(self) -> None:
        # A container listening on 127.0.0.1 only is never reached by the kubelet's probes and
        # hooks or the balancer, which all go to the pod IP: in a cluster the pod would never be
        # ready (or its hook would fail). Said at once, with what cannot reach it.
        while True:
            unreachable = unreachable_listeners(self.ports, self.address)
            if unreachable:
                symbol, where = next(iter(unreachable.items()))
                reason = unreachable_message(self.template, symbol, f"{where}:{self.ports[symbol]}", self.address)
                self._start_failure = f"{self.name}: {reason}"
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
        grace = self.template.grace_period_seconds
        # The kubelet's own deadline (monotonic, as the loop's clock): the pod's, not the sidecar's budget.
        grace_deadline = time.monotonic() + grace
        self._event(f"deleted: grace period {grace:g}s")
        # Native sidecars' own preStop hooks run as the termination starts, beside the app
        # containers'; their stop signals wait for the app containers (KEP-753, Kubernetes 1.29+:
        # https://kubernetes.io/docs/concepts/workloads/pods/sidecar-containers/).
        sidecar_hooks = [
            asyncio.create_task(self._run_hook(spec, grace_deadline), name=f"{self.name}/{spec.name}/preStop")
            for spec in self.template.sidecars
        ]
        try:
            # Without a sequence among them: the app containers are stopped concurrently.
            await asyncio.gather(*(self._stop(spec, grace_deadline, hook=True) for spec in self.template.containers))
            await asyncio.gather(*sidecar_hooks)
        finally:
            for task in sidecar_hooks:
                task.cancel()
        # Native sidecars only once every app container has exited, last started first.
        for spec in reversed(self.template.sidecars):
            await self._stop(spec, grace_deadline, hook=False)
        self.record.terminated_at = self._clock()

    async def _run_hook(self, spec: ContainerSpec, grace_deadline: float) -> None:
        await run_pre_stop_hook(
            spec,
            self._containers[spec.name],
            address=self.address,
            ports=self.ports,
            grace_deadline=grace_deadline,
            clock=self._clock,
            on_event=self._event,
        )

    async def _stop(self, spec: ContainerSpec, grace_deadline: float, *, hook: bool) -> None:
        if hook:
            await self._run_hook(spec, grace_deadline)
        await stop_container(
            spec,
            self._containers[spec.name],
            after_hook=hook,
            grace_period_seconds=int(self.template.grace_period_seconds),
            grace_deadline=grace_deadline,
            clock=self._clock,
            on_event=self._event,
        )

    async def kill(self) -> None:
        """The end of a run: SIGKILL what is left, reap it, stop probing."""
        self._is_cleaning_up = True
        for container in self._containers.values():
            container.kill()
        for task in self._probers:
            task.cancel()
        await asyncio.gather(*self._probers, *self._reapers, return_exceptions=True)
