"""`shutdown-sidecar simulate`: from checked Options to an exit status. Builds the pod template
(from --mode, --chart or --manifest), runs the rollout with a progress line per event on stderr, and prints
the result (text or --json) on stdout. SIGINT, SIGTERM or SIGHUP stops the rehearsal and kills every
pod it started; killed outright, its lifeline (sidecar.simulate.lifeline) kills them."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import shutil
import signal
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Final, TextIO

from sidecar.simulate.endpoints import Propagation
from sidecar.simulate.kubelet import PodStartError, PodStartTimeout
from sidecar.simulate.lateness import Lateness
from sidecar.simulate.lifeline import Lifeline
from sidecar.simulate.load import load_document
from sidecar.simulate.options import Options
from sidecar.simulate.podspec import PodTemplate, template_for_mode
from sidecar.simulate.progress import Progress
from sidecar.simulate.render import render
from sidecar.simulate.rollout import Plan, Rollout
from sidecar.simulate.strategy import Strategy
from sidecar.simulate.verdict import Document, result_document
from sidecar.simulate.warm_up import warm_up_seconds

EXIT_PASS: Final = 0
EXIT_FAIL: Final = 1
EXIT_USAGE: Final = 2
# The machine ran the rehearsal too late to judge it (SPEC.md): a failure its own lateness could
# have caused, or lateness that could have hidden one. Not the app's fault, not a pass either.
EXIT_INCONCLUSIVE: Final = 3
# Loop stalls adding up to this much make a start that timed out worth a word about the machine.
BUSY_STALLED_SECONDS: Final = 1.0
EXIT_BY_VERDICT: Final = {"pass": EXIT_PASS, "fail": EXIT_FAIL, "inconclusive": EXIT_INCONCLUSIVE}
# What stops a rehearsal early, each with exit status 128 + its number: a terminal's Ctrl-C, a
# CI runner's or `timeout`'s SIGTERM, a closed terminal's SIGHUP.
INTERRUPTING_SIGNALS: Final = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class SetupError(Exception):
    """The rehearsal cannot run as asked (a chart that does not render, an app that cannot
    start): exit 2 with this one line."""


class StartStarved(Exception):
    """A pod was not ready in time while the machine starved the rehearsal: exit 3 (inconclusive)
    with this line, not the app's fault as far as anyone can tell. `lateness`: what was measured."""

    def __init__(self, message: str, lateness: Lateness) -> None:
        super().__init__(message)
        self.lateness = lateness


@dataclasses.dataclass(frozen=True)
class Rehearsed:
    """What is rolled out: from the flags, or from --chart or --manifest."""

    template: PodTemplate
    pods: int
    strategy: Strategy


def rehearsed(options: Options) -> Rehearsed:
    """The flags' pod, or the workload of --manifest or --chart: a chart's render goes through the
    manifest's translation (replicas, strategy, what is not modelled), as it would reach a cluster."""
    chart, manifest = options.chart, options.manifest
    if chart is None and manifest is None:
        return Rehearsed(pod_template(options), options.pods, options.strategy)
    from sidecar.simulate.helm import ChartError, render_chart  # Helm loads only for --chart
    from sidecar.simulate.workload import read_manifest, workload_from_manifests

    try:
        if chart is not None:
            workload = workload_from_manifests(render_chart(chart, options.values), options.app_command, flag="--chart")
        elif manifest is not None:
            workload = workload_from_manifests(read_manifest(manifest), options.app_command)
    except ChartError as exc:
        raise SetupError(str(exc)) from None
    if workload.not_modelled:
        print(f"shutdown-sidecar simulate: not modelled: {', '.join(workload.not_modelled)}", file=sys.stderr)
    pods = options.pods if workload.replicas is None else workload.replicas
    return Rehearsed(workload.template, pods, workload.strategy)


def pod_template(options: Options) -> PodTemplate:
    return template_for_mode(
        options.mode,
        options.budget,
        options.app_command,
        hold=options.hold_rule,
        stop_signal=signal.Signals[options.stop_signal],
        readiness_until_stop=options.readiness_until == "stop",
    )


def flag_value(argv: Sequence[str], flag: str) -> float | None:
    """A sidecar flag's number from a command line (`--flag=N`), for the settings summary."""
    for arg in argv:
        name, _, value = arg.partition("=")
        if name == flag and value:
            with contextlib.suppress(ValueError):
                return float(value)
    return None


def settings_document(options: Options, rollout: Rehearsed) -> Document:
    template, strategy = rollout.template, rollout.strategy
    reporter = next((c for c in template.all_containers if c.reports), None)
    app = next((c for c in template.all_containers if c.serves_traffic), None)
    return {
        "grace_period_seconds": template.grace_period_seconds,
        "prestop_delay_seconds": None if reporter is None else flag_value(reporter.argv, "--prestop-delay"),
        "propagation_delay_seconds": options.propagation_delay_seconds,
        "propagation_spread_seconds": options.propagation_spread_seconds,
        "rps": options.rate_per_second,
        "pods": rollout.pods,
        "strategy": strategy.describe(rollout.pods),
        "min_ready_seconds": strategy.min_ready_seconds,
        "stop_signal": options.stop_signal if app is None else app.stop_signal.name,
        "sidecar_readiness": options.readiness_until,
        "request_timeout_seconds": options.request_timeout_seconds,
        "warm_up_seconds": warm_up_seconds(template, options.warm_up_seconds),
        "seed": options.seed,
        "app_command": list(options.app_command),
        "chart": None if options.chart is None else str(options.chart),
        "values": None if options.values is None else str(options.values),
        "manifest": options.manifest,
    }


@contextlib.contextmanager
def log_directory(keep: Path | None) -> Iterator[Path]:
    """--logs DIR, or a temporary directory removed at the end, unless a pod could not start: its
    error names a container's log in it, which must still be there to be read."""
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        yield keep
        return
    path = Path(tempfile.mkdtemp(prefix="shutdown-sidecar-simulate-"))
    try:
        yield path
    except (SetupError, StartStarved):
        raise
    except BaseException:
        shutil.rmtree(path, ignore_errors=True)
        raise
    shutil.rmtree(path, ignore_errors=True)


def busy_machine_note(lateness: Lateness) -> str:
    """What the machine's load did to the rehearsal, for a start that timed out; empty when nothing."""
    figures = lateness.document()
    stalled = figures["loop"]["stalled_seconds"]
    slowest = figures["process_start"]["max_seconds_to_ready"]
    if stalled < BUSY_STALLED_SECONDS:
        return ""
    ready = f"the containers that became ready took up to {slowest:.1f}s" if slowest else "no container became ready"
    return f"; the machine is busy: the rehearsal's event loop stalled {stalled:.1f}s in all, and {ready}"


async def rehearse(options: Options) -> int:
    """The rehearsal's exit status, or 128 + N when signal N (INTERRUPTING_SIGNALS) stops it,
    from its start (a signal while the chart renders, which holds the loop, is acted on after)."""
    loop = asyncio.get_running_loop()
    run = asyncio.create_task(rehearse_uninterrupted(options), name="rehearsal")
    interrupted: list[signal.Signals] = []

    def interrupt(sig: signal.Signals) -> None:
        # Recorded here, acted on by the task: its cancellation runs every clean-up on its way out
        # (the rollout kills every pod it started). Only the first: a second would cancel those.
        if not interrupted:
            interrupted.append(sig)
            run.cancel()

    for sig in INTERRUPTING_SIGNALS:
        loop.add_signal_handler(sig, interrupt, sig)
    try:
        return await run
    except asyncio.CancelledError:
        if not interrupted:
            raise
        print(f"shutdown-sidecar simulate: interrupted by {interrupted[0].name}", file=sys.stderr)
        return 128 + interrupted[0].value
    finally:
        for sig in INTERRUPTING_SIGNALS:
            loop.remove_signal_handler(sig)


async def rehearse_uninterrupted(options: Options) -> int:
    what = rehearsed(options)
    template = what.template
    progress = Progress(sys.stderr)
    with log_directory(options.logs) as workdir:
        plan = Plan(
            template=template,
            pods=what.pods,
            rate_per_second=options.rate_per_second,
            propagation=Propagation(options.propagation_delay_seconds, options.propagation_spread_seconds),
            request_timeout_seconds=options.request_timeout_seconds,
            seed=options.seed,
            workdir=workdir,
            client=options.client,
            balancer=options.balancer,
            connections=options.connections,
            strategy=what.strategy,
            latency_seconds=options.network_latency_seconds,
            load_shape=options.load_shape,
            warm_up_seconds=warm_up_seconds(template, options.warm_up_seconds),
        )
        rollout = Rollout(plan, progress)
        progress.rollout = rollout
        try:
            await rollout.run()
        except PodStartError as exc:
            note = busy_machine_note(rollout.lateness)
            if isinstance(exc, PodStartTimeout) and note:
                raise StartStarved(f"{exc}{note}", rollout.lateness) from None
            raise SetupError(f"{exc}{note}") from None
        result = result_document(
            template.mode,
            settings_document(options, what),
            rollout.tally,
            rollout.deleted,
            rollout.clock(),
            crashes=rollout.crashes,
            load=load_document(options.client, options.balancer, options.connections, rollout.tally),
            lateness=rollout.lateness,
            every_pod=rollout.records,
        )
    print_result(result, as_json=options.json, stream=sys.stdout)
    if options.html is not None:
        write_page(options.html, result)
    return EXIT_BY_VERDICT[result["verdict"]]


def print_result(result: Document, *, as_json: bool, stream: TextIO) -> None:
    stream.write(json.dumps(result, indent=2) + "\n" if as_json else render(result))
    stream.flush()


def write_page(path: Path, result: Document) -> None:
    from sidecar.pages.page import simulation_page

    try:
        path.write_text(simulation_page(result), encoding="utf-8")
    except OSError as exc:
        raise SetupError(f"--html: cannot write {path}: {exc.strerror}") from None
    print(f"shutdown-sidecar simulate: wrote {path}", file=sys.stderr)


def simulate(options: Options) -> int:
    # Around everything that starts a process: whatever survives the run's own clean-up, or the
    # run itself (SIGKILLed), is killed by the lifeline's sweep.
    with Lifeline():
        try:
            return asyncio.run(rehearse(options))
        except SetupError as exc:
            print(f"shutdown-sidecar simulate: error: {exc}", file=sys.stderr)
            return EXIT_USAGE
        except StartStarved as exc:
            print(f"shutdown-sidecar simulate: inconclusive: {exc}", file=sys.stderr)
            if options.json:
                starved = {"verdict": "inconclusive", "reasons": [str(exc)], "doubts": [str(exc)]}
                print_result({**starved, "lateness": exc.lateness.document()}, as_json=True, stream=sys.stdout)
            return EXIT_INCONCLUSIVE
