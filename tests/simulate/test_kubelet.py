"""One pod run by the simulated kubelet with real processes: started until ready, deleted with
the SIGTERM (and the SIGKILL when the grace period and the 2 s floor are over), each step
recorded; an app that cannot start is a PodStartError saying why."""

from __future__ import annotations

import asyncio
import random
import sys
import time
from pathlib import Path

import pytest

from sidecar.deadline import Budget
from sidecar.simulate.kubelet import SIGTERM_MINIMUM_GRACE_SECONDS, Pod, PodStartError
from sidecar.simulate.podspec import APP_PORT, Mode, PodTemplate, demo_app_command, template_for_mode
from sidecar.simulate.rollout import PortAllocator

START_SECONDS = 15.0
BUDGET = Budget(1.0, 0.0, 0.5)  # only the grace period counts without a sidecar


class Kubelet:
    """What a Rollout gives a pod: ports, a clock, and the events and readiness it hears."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.events: list[str] = []
        self.readiness: list[bool] = []
        self._ports = PortAllocator(random.Random())

    def pod(self, template: PodTemplate) -> Pod:
        return Pod(
            "old-1",
            template,
            ports={APP_PORT: self._ports.take()},
            workdir=self.workdir,
            clock=time.monotonic,
            on_event=self.events.append,
            on_readiness=lambda _, ready: self.readiness.append(ready),
        )


def app_alone(*app_command: str) -> PodTemplate:
    return template_for_mode(Mode.NONE, BUDGET, app_command or demo_app_command())


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
    script += "s = socket.socket(); s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen(); time.sleep(60)"
    pod = kubelet.pod(app_alone(sys.executable, "-c", script, "{port}"))
    try:
        await pod.start(START_SECONDS)
        async with asyncio.timeout(START_SECONDS):
            await pod.delete()
    finally:
        await pod.kill()
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
