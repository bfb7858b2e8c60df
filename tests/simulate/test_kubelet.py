"""One pod run by the simulated kubelet with real processes: started until ready, deleted with
the SIGTERM (and the SIGKILL when the grace period and the 2 s floor are over), each step
recorded; an app that cannot start is a PodStartError saying why."""

from __future__ import annotations

import asyncio
import dataclasses
import random
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from sidecar.deadline import Budget
from sidecar.simulate.kubelet import SIGTERM_MINIMUM_GRACE_SECONDS, Pod, PodStartError, PodStartTimeout
from sidecar.simulate.pod_network import PortAllocator
from sidecar.simulate.podspec import (
    ADMIN_PORT,
    APP_PORT,
    HttpGet,
    Mode,
    PodTemplate,
    demo_app_command,
    template_for_mode,
)

START_SECONDS = 15.0
BUDGET = Budget(1.0, 0.0, 0.5)  # only the grace period counts without a sidecar


class Kubelet:
    """What a Rollout gives a pod: ports, a clock, and the events and readiness it hears."""

    def __init__(self, workdir: Path, address: str = "127.0.0.3") -> None:
        self.workdir = workdir
        self.address = address  # the pod's IP
        self.events: list[str] = []
        self.readiness: list[bool] = []
        self._ports = PortAllocator(random.Random())

    def pod(self, template: PodTemplate) -> Pod:
        return Pod(
            "old-1",
            template,
            ports={APP_PORT: self._ports.take(), ADMIN_PORT: self._ports.take()},
            address=self.address,
            workdir=self.workdir,
            clock=time.monotonic,
            on_event=self.events.append,
            on_readiness=lambda _, ready: self.readiness.append(ready),
        )


def app_alone(*app_command: str) -> PodTemplate:
    return template_for_mode(Mode.NONE, BUDGET, app_command or demo_app_command())


HookHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def run_to_termination(pod: Pod, *, hook: tuple[HookHandler, str] | None = None) -> None:
    """Start `pod`, delete it and wait for its termination; it is killed whatever happens.
    `hook`: a handler served at (that address, the pod's admin port) for the app's preStop hook."""
    server = None if hook is None else await asyncio.start_server(hook[0], hook[1], pod.ports[ADMIN_PORT])
    try:
        await pod.start(START_SECONDS)
        async with asyncio.timeout(START_SECONDS):
            await pod.delete()
    finally:
        await pod.kill()
        if server is not None:
            server.close()
            await server.wait_closed()


@pytest.mark.anyio
async def test_pod_starts_ready_and_on_deletion_signals_the_app_which_drains_and_exits(tmp_path: Path) -> None:
    kubelet = Kubelet(tmp_path)
    pod = kubelet.pod(app_alone())
    try:
        await pod.start(START_SECONDS)
        assert kubelet.readiness == [True]
        async with asyncio.timeout(START_SECONDS):
            await pod.delete()
    finally:
        await pod.kill()
    record, app = pod.record, pod.record.containers["app"]
    assert record.deleted_at is not None
    assert app.signalled_at is not None
    assert app.exited_at is not None
    assert record.deleted_at <= app.signalled_at <= app.exited_at <= (record.terminated_at or 0)
    assert (app.exit_status, app.killed_at, app.hook_started_at) == (0, None, None)
    assert record.crashes == []
    assert "old-1 app SIGTERM" in kubelet.events
    assert "old-1 app exited with status 0" in kubelet.events


@pytest.mark.anyio
async def test_pod_sigkills_an_app_that_ignores_sigterm_after_the_minimum_grace(tmp_path: Path) -> None:
    kubelet = Kubelet(tmp_path)
    # Listens (so the pod becomes ready), ignores SIGTERM.
    script = "import signal, socket, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    script += "s = socket.socket(); s.bind((sys.argv[2], int(sys.argv[1]))); s.listen(); time.sleep(60)"
    pod = kubelet.pod(app_alone(sys.executable, "-c", script, "{port}", "{host}"))
    await run_to_termination(pod)
    app = pod.record.containers["app"]
    assert app.signalled_at is not None
    assert app.killed_at is not None
    # The grace period is 1 s, but a container gets at least 2 s after its SIGTERM.
    assert app.killed_at - app.signalled_at >= SIGTERM_MINIMUM_GRACE_SECONDS - 0.01
    assert app.exit_status == 128 + 9
    assert any("SIGKILL" in event for event in kubelet.events)


@pytest.mark.anyio
async def test_pod_start_of_a_missing_command_raises_naming_it(tmp_path: Path) -> None:
    pod = Kubelet(tmp_path).pod(app_alone("shutdown-sidecar-test-no-such-command"))
    with pytest.raises(PodStartError, match="old-1: app: shutdown-sidecar-test-no-such-command: command not found"):
        await pod.start(START_SECONDS)
    await pod.kill()


@pytest.mark.anyio
async def test_pod_start_of_an_app_that_exits_raises_with_its_last_line_and_a_hint(tmp_path: Path) -> None:
    pod = Kubelet(tmp_path).pod(app_alone("sh", "-c", "echo cannot bind; exit 1"))
    try:
        with pytest.raises(PodStartError, match=r"app exited with status 1 while starting: cannot bind \(.*\{port\}"):
            await pod.start(START_SECONDS)
    finally:
        await pod.kill()


@pytest.mark.anyio
async def test_pod_start_of_an_app_listening_on_127_0_0_1_only_raises_naming_what_cannot_reach_it(
    tmp_path: Path,
) -> None:
    # The pod's IP is 127.0.0.3: the kubelet's probes and the balancer go there, as in a cluster.
    pod = Kubelet(tmp_path).pod(app_alone(*demo_app_command(), "--host", "127.0.0.1"))
    try:
        with pytest.raises(
            PodStartError, match=r"app listens on 127\.0\.0\.1:\d+ only, not on the pod's address 127\.0\.0\.3"
        ):
            await pod.start(START_SECONDS)
    finally:
        await pod.kill()


@pytest.mark.anyio
async def test_pod_start_of_a_sidecar_listening_on_127_0_0_1_only_names_the_apps_prestop_hook(tmp_path: Path) -> None:
    template = template_for_mode(Mode.NATIVE, Budget(5.0, 1.0, 0.5), demo_app_command())
    (sidecar,) = template.sidecars
    loopback_only = tuple("--host=127.0.0.1" if arg.startswith("--host=") else arg for arg in sidecar.argv)
    template = dataclasses.replace(template, sidecars=(dataclasses.replace(sidecar, argv=loopback_only),))
    pod = Kubelet(tmp_path).pod(template)
    try:
        with pytest.raises(PodStartError) as raised:
            await pod.start(START_SECONDS)
    finally:
        await pod.kill()
    assert "shutdown-sidecar listens on 127.0.0.1:" in str(raised.value)
    assert "app preStop hook GET /prestop" in str(raised.value)
    assert "shutdown-sidecar readiness probe" in str(raised.value)


@pytest.mark.anyio
async def test_pod_hook_on_a_port_name_of_another_container_fails_once_and_the_stop_signal_follows(
    tmp_path: Path,
) -> None:
    unresolved = HttpGet(ADMIN_PORT, "/prestop", error="port name 'admin' is not one of container app's own ports")
    template = app_alone()
    template = dataclasses.replace(
        template, containers=(dataclasses.replace(template.containers[0], pre_stop=unresolved),)
    )
    kubelet = Kubelet(tmp_path)
    pod = kubelet.pod(template)
    await run_to_termination(pod)
    app = pod.record.containers["app"]
    assert app.hook_failed
    assert app.hook_result == unresolved.error
    assert app.signalled_at is not None
    assert app.hook_ended_at is not None
    assert app.signalled_at - app.hook_ended_at < 1.0  # no retry, no wait: the stop signal at once
    assert any("FailedPreStopHook, not retried" in event for event in kubelet.events)


@pytest.mark.anyio
async def test_pod_hook_is_sent_once_to_the_pod_address_and_a_500_is_not_retried(tmp_path: Path) -> None:
    heads: list[bytes] = []

    async def on_pod_address(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        heads.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    kubelet = Kubelet(tmp_path, address="127.0.0.4")
    template = app_alone()
    hook = HttpGet(ADMIN_PORT, "/prestop")
    template = dataclasses.replace(template, containers=(dataclasses.replace(template.containers[0], pre_stop=hook),))
    pod = kubelet.pod(template)
    await run_to_termination(pod, hook=(on_pod_address, "127.0.0.4"))
    hooks = [head for head in heads if head.startswith(b"GET /prestop ")]  # the demo also asks for /events
    assert len(hooks) == 1
    assert b"Host: 127.0.0.4:" in hooks[0]
    app = pod.record.containers["app"]
    assert (app.hook_result, app.hook_failed) == ("500", True)


@pytest.mark.anyio
async def test_pod_sigkill_comes_the_grace_period_less_the_hooks_whole_seconds_after_the_stop_signal(
    tmp_path: Path,
) -> None:
    async def slow_hook(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await asyncio.sleep(1.9)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    kubelet = Kubelet(tmp_path, address="127.0.0.5")
    script = "import signal, socket, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    script += "s = socket.socket(); s.bind((sys.argv[2], int(sys.argv[1]))); s.listen(); time.sleep(60)"
    template = template_for_mode(Mode.NONE, Budget(5.0, 0.0, 0.5), (sys.executable, "-c", script, "{port}", "{host}"))
    app = dataclasses.replace(template.containers[0], pre_stop=HttpGet(ADMIN_PORT, "/prestop"), readiness=None)
    pod = kubelet.pod(dataclasses.replace(template, containers=(app,)))
    await run_to_termination(pod, hook=(slow_hook, "127.0.0.5"))
    record = pod.record.containers["app"]
    assert record.signalled_at is not None
    assert record.killed_at is not None
    assert pod.record.deleted_at is not None
    # killContainer: 5 s less the hook's 1 whole second, from the stop signal (at about 1.9 s):
    # the SIGKILL comes near 5.9 s after the deletion, not at the 5 s the grace period suggests.
    assert record.killed_at - record.signalled_at >= 4.0 - 0.01
    assert record.killed_at - pod.record.deleted_at > 5.5


@pytest.mark.anyio
async def test_pod_start_timeout_names_the_native_sidecar_holding_it_and_a_log_that_exists(tmp_path: Path) -> None:
    # The native sidecar never answers its startup probe, so the app container is never started:
    # the error must say so, not ask whether the app listens, and name the sidecar's own log.
    native = template_for_mode(Mode.NATIVE, Budget(5.0, 1.0, 0.5), demo_app_command())
    silent = dataclasses.replace(native.sidecars[0], argv=("sleep", "60"))
    pod = Kubelet(tmp_path).pod(dataclasses.replace(native, sidecars=(silent,)))
    try:
        with pytest.raises(PodStartTimeout) as raised:
            await pod.start(2.0)
    finally:
        await pod.kill()
    message = str(raised.value)
    assert message.startswith("old-1: shutdown-sidecar not started after 2s (its probe, GET /startupz at 127.0.0.3:")
    assert message.endswith("app not started: the kubelet starts them once the native sidecar has")
    log = Path(message.split("see ", 1)[1].split(")", 1)[0])
    assert log == tmp_path / "old-1" / "shutdown-sidecar.log"
    assert await asyncio.to_thread(log.exists)
