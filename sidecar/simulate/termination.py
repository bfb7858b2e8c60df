"""One container's termination as the kubelet's killContainer runs it: its preStop hook (once, to
the pod IP, bounded by the grace period), then its stop signal, then SIGKILL when the grace left
is over. Records each step; decides nothing about the order of containers (sidecar.simulate.kubelet).
Kubernetes: pkg/kubelet/kuberuntime/kuberuntime_container.go (killContainer, executePreStopHook)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping
from typing import Final

from sidecar.deadline import seconds_left
from sidecar.simulate.client import Result, http_get
from sidecar.simulate.container import ContainerProcess, kill_session
from sidecar.simulate.lifeline import check_executable, parent_death_prefix
from sidecar.simulate.podspec import ContainerSpec, ExecHook
from sidecar.simulate.records import Clock

# killContainer's minimumGracePeriodInSeconds: a container whose preStop hook used up the grace
# period still gets this long after its stop signal before the SIGKILL.
MINIMUM_GRACE_SECONDS: Final = 2
# How long a cancelled exec hook, SIGKILLed, is waited for before the cancellation goes on.
REAP_SECONDS: Final = 2.0


def hook_passed(result: Result) -> bool:
    # The kubelet's HTTP handler: a transport error or a status outside 200-399 is a failure.
    return result.status is not None and 200 <= result.status < 400


async def run_pre_stop_hook(
    spec: ContainerSpec,
    container: ContainerProcess,
    *,
    address: str,
    ports: Mapping[str, int],
    grace_deadline: float,
    clock: Clock,
    on_event: Callable[[str], None],
) -> None:
    """The hook, sent once to the pod's address: the kubelet never retries an httpGet hook; a
    failure is the event FailedPreStopHook and the stop signal follows all the same.
    https://kubernetes.io/docs/concepts/containers/container-lifecycle-hooks/#hook-delivery-guarantees"""
    hook, record = spec.pre_stop, container.record
    if hook is None or container.exited.is_set():
        return
    record.hook_started_at = clock()
    what = f"exec {hook.command[0]}" if isinstance(hook, ExecHook) else f"GET {hook.path}"
    if isinstance(hook, ExecHook):
        description, passed = await run_exec_hook(hook, container.env, grace_deadline)
    elif hook.error is not None:
        description, passed = hook.error, False
    else:
        result = await http_get(
            ports[hook.port],
            hook.path,
            timeout_seconds=seconds_left(grace_deadline),
            headers=hook.headers,
            host=address,
        )
        description, passed = result.describe(), hook_passed(result)
    record.hook_ended_at = clock()
    record.hook_result, record.hook_failed = description, not passed
    waited = record.hook_ended_at - record.hook_started_at
    verdict = "" if passed else " (FailedPreStopHook, not retried)"
    on_event(f"{spec.name} preStop hook {what}: {description} after {waited:.2f}s{verdict}")


async def run_exec_hook(hook: ExecHook, env: Mapping[str, str], grace_deadline: float) -> tuple[str, bool]:
    """(what happened, passed): the kubelet's exec handler fails a hook on a non-zero exit; it is
    killed when the grace period ends, as the container's runtime would, with whatever it started
    (the runtime kills the container's cgroup). Cancelled (the rehearsal is ending), it is killed so.
    `env`: the container's environment, which an exec hook runs with (it runs in the container:
    https://kubernetes.io/docs/concepts/containers/container-lifecycle-hooks/#hook-handler-implementations)."""
    check_executable(hook.command[0], env)
    process = await asyncio.create_subprocess_exec(
        *parent_death_prefix(),
        *hook.command,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        env=env,
        # A session of its own, as each container's: a terminal's Ctrl-C reaches none of it, and
        # its kill reaches all of it (a shell's children too).
        start_new_session=True,
    )
    try:
        async with asyncio.timeout_at(grace_deadline):
            status = await process.wait()
    except TimeoutError:
        kill_session(process.pid)
        await process.wait()
        return "still running at the end of the grace period", False
    except asyncio.CancelledError:
        kill_session(process.pid)
        # Reaped before the cancellation goes on (SIGKILL makes it quick): a process transport
        # left to the garbage collector unreaped warns that its process is still running.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(process.wait(), REAP_SECONDS)
        raise
    return f"exit status {status}", status == 0


async def stop_container(
    spec: ContainerSpec,
    container: ContainerProcess,
    *,
    grace_period_seconds: int,
    grace_deadline: float,
    after_hook: bool,
    clock: Clock,
    on_event: Callable[[str], None],
) -> None:
    """The stop signal (the hook, if any, has returned), then SIGKILL: `grace_period_seconds` less
    the whole seconds the hook took (the kubelet truncates them), at least MINIMUM_GRACE_SECONDS,
    after the signal. A container without a hook, or signalled late (a native sidecar, after the
    app containers), is SIGKILLed at `grace_deadline`, at least MINIMUM_GRACE_SECONDS after it."""
    record, exited = container.record, container.exited
    sigkill_deadline = grace_deadline
    if not exited.is_set():
        container.send(spec.stop_signal)
        now = time.monotonic()
        record.signalled_at, record.stop_signal = clock(), spec.stop_signal.name
        on_event(f"{spec.name} {spec.stop_signal.name}")
        if after_hook and record.hook_started_at is not None and record.hook_ended_at is not None:
            hook_whole_seconds = int(record.hook_ended_at - record.hook_started_at)
            sigkill_deadline = now + max(MINIMUM_GRACE_SECONDS, grace_period_seconds - hook_whole_seconds)
        else:
            sigkill_deadline = max(grace_deadline, now + MINIMUM_GRACE_SECONDS)
    record.kill_due_at = clock() + (sigkill_deadline - time.monotonic())
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout_at(sigkill_deadline):  # the loop's clock is time.monotonic
            await exited.wait()
    if not exited.is_set():
        container.kill()
        record.killed_at = clock()
        on_event(f"{spec.name} SIGKILL: still running at the end of the grace period")
        await exited.wait()
