"""The command line: argv -> Settings -> the chosen mode. Flags are derived from the settings
table (sidecar.config); a bad value, an unknown flag or a port in use ends here with one line
on stderr and exit status 2, before anything has started."""

from __future__ import annotations

import argparse
import dataclasses
import gc
import importlib.util
import os
import socket
import sys
from collections.abc import Sequence
from typing import Final, NoReturn

from sidecar import __version__
from sidecar.lean_imports import import_asyncio_without_tls

# First, before anything imports asyncio (sidecar.config does): no mode runs a TLS transport of
# asyncio's, and its ssl import costs every pod about 5 MB.
import_asyncio_without_tls()

from sidecar.config import (  # noqa: E402
    Settings,
    SettingsError,
    TracingEnvironment,
    load_settings,
    load_tracing_environment,
    setting_specs,
)

EXIT_USAGE: Final = 2

# The `server` extra (pyproject.toml) as modules: `serve`, `run` and `simulate` need them all. The
# app-side install, `pip install shutdown-sidecar` for sidecar.integrations, has none of them.
SERVER_MODULES: Final = (
    "starlette",
    "uvicorn",
    "httptools",
    "prometheus_client",
    "opentelemetry.sdk",
    "opentelemetry.exporter.otlp.proto.http",
)
SERVER_INSTALL: Final = "pip install 'shutdown-sidecar[server]'"

DESCRIPTION: Final = """\
Graceful, measured pod shutdown on Kubernetes. Readiness fails the moment shutdown starts
(SIGTERM or the app's preStop call to /prestop), /prestop holds the app's SIGTERM until
endpoint removal has propagated, and every shutdown is measured and reported."""

SERVE_EPILOG: Final = """\
endpoints: GET /livez /readyz[?verbose] /startupz /status /metrics /events; GET|POST /prestop;
POST /drain. Every flag can also be set as the environment variable shown; flags win.
Point the app container's preStop httpGet at /prestop and the sidecar's readinessProbe at /readyz."""


RUN_EPILOG: Final = """\
run mode: CMD runs in its own process group. At t0 (SIGTERM, SIGINT, SIGQUIT or /prestop)
readiness fails, CMD keeps serving through the prestop delay, then gets --stop-signal; the drain
ends when it, and every process it left in its group, has exited. At deadline - report reserve
its process group is SIGKILLed (the report counts processes_left_behind). SIGHUP, SIGUSR1,
SIGUSR2, SIGALRM, SIGVTALRM, SIGPROF, SIGIO, SIGPWR and SIGWINCH are forwarded at once. A second
SIGINT finishes the report at once, except after /prestop: then it is the kubelet's stop signal
(lifecycle.stopSignal: SIGINT) and the drain goes on.
Exits with CMD's status (128+N when killed by signal N); 127 when CMD is not found, 126 when it
cannot be executed."""


def terminal_columns() -> int:
    """shutil.get_terminal_size().columns without shutil, which argparse's formatter imports (with
    bz2 and lzma) at the first add_argument of every start, for help text that is rarely printed."""
    try:
        return int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        pass
    try:
        return os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
    except (AttributeError, ValueError, OSError):
        return 80


class Formatter(argparse.HelpFormatter):
    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24, width: int | None = None):
        super().__init__(prog, indent_increment, max_help_position, terminal_columns() - 2 if width is None else width)


class RawDescriptionFormatter(Formatter, argparse.RawDescriptionHelpFormatter):
    pass


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse prints the whole usage before an error; operators reading pod logs want one line."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The whole command line; with `argv`, each command's options only when it names the command:
    simulate's cost the imports of sidecar.simulate (about 10 ms), which serve and run never need
    (report's likewise, sidecar.pages), and serve's and run's 25 flags each about 1 ms."""
    parser = OneLineErrorParser(prog="shutdown-sidecar", description=DESCRIPTION, formatter_class=Formatter)
    parser.add_argument("--version", action="version", version=f"shutdown-sidecar {__version__}")
    commands = parser.add_subparsers(dest="mode", metavar="COMMAND")
    serve = commands.add_parser(
        "serve",
        help="run the admin server in its own container next to the app",
        description=DESCRIPTION,
        epilog=SERVE_EPILOG,
        formatter_class=RawDescriptionFormatter,
    )
    if argv is None or "serve" in argv:
        add_setting_flags(serve)
    run = commands.add_parser(
        "run",
        help="be the app container's entrypoint: run CMD as a child and drain it",
        usage="shutdown-sidecar run [options] -- CMD [ARGS...]",
        description=DESCRIPTION,
        epilog=RUN_EPILOG,
        formatter_class=RawDescriptionFormatter,
    )
    if argv is None or "run" in argv:
        add_setting_flags(run)
    run.add_argument("command", nargs=argparse.REMAINDER, help="the app's command, after --")
    simulate = commands.add_parser(
        "simulate",
        help="rehearse a Kubernetes rolling update on this machine: dropped requests, SIGKILLs",
        usage="shutdown-sidecar simulate [options] [-- APP CMD [ARGS...]]",
        description="Rehearse Kubernetes' termination sequence on this machine with real processes on "
        "loopback, and tell whether requests were dropped or a drain overran the grace period.",
        formatter_class=RawDescriptionFormatter,
    )
    if argv is None or "simulate" in argv:
        from sidecar.simulate.options import EPILOG as SIMULATE_EPILOG
        from sidecar.simulate.options import add_arguments as add_simulate_arguments

        simulate.epilog = SIMULATE_EPILOG
        add_simulate_arguments(simulate)
    report = commands.add_parser(
        "report",
        help="read real pods' final reports (kubectl get pods -o json, termination log, log line): one line "
        "per pod, or a page",
        usage="shutdown-sidecar report [FILE|-] [--html OUT]",
        formatter_class=RawDescriptionFormatter,
    )
    if argv is None or "report" in argv:
        from sidecar.pages import command as report_command

        report.description, report.epilog = report_command.DESCRIPTION, report_command.EPILOG
        report_command.add_arguments(report)
    return parser


def add_setting_flags(parser: argparse.ArgumentParser) -> None:
    for spec in setting_specs():
        parser.add_argument(
            spec.flag,
            dest=spec.name,
            metavar=spec.metavar,
            default=None,  # None = not given, so the environment variable can apply
            help=f"{spec.help} [env {spec.env_var}; default {spec.shown_default}]",
        )


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if args.mode is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    if args.mode == "report":  # the standard library only: it runs where the server extra is not installed
        from sidecar.pages.command import report

        return report(args)
    missing = missing_server_modules()
    if missing:
        print(
            f"shutdown-sidecar: error: {args.mode} needs the server dependencies, missing here "
            f"({', '.join(missing)}): {SERVER_INSTALL}",
            file=sys.stderr,
        )
        return EXIT_USAGE
    if args.mode == "simulate":
        return simulate(args)

    # From here on a signal waits for the handlers (installed before the port accepts) instead of
    # ending the process: the kubelet may signal a container the moment it starts.
    from sidecar.lean_imports import defer_server_packages
    from sidecar.signals import hold_signals, restore_signal_mask

    defer_server_packages()
    previous_mask = hold_signals()
    startup = prepare_to_serve(args)
    if isinstance(startup, int):
        restore_signal_mask(previous_mask)  # nothing started: the caller gets its mask back
        return startup

    from sidecar.assembly import serve
    from sidecar.logs import configure_logging
    from sidecar.telemetry.metrics import configure_prometheus_client

    configure_logging(startup.settings.log_format, startup.settings.log_level)
    configure_prometheus_client()
    # Everything imported so far lives until exit: move it out of the collector's sight. Run-time
    # collections then skip it, and so does interpreter teardown (about 20 ms of the exit). The
    # collector is back on from here (the command line's entry turned it off for the start-up).
    gc.freeze()
    gc.enable()
    import asyncio

    return asyncio.run(serve(startup.settings, startup.sock, startup.command, startup.tracing))


def missing_server_modules() -> list[str]:
    """The server modules that cannot be imported here; found without importing them (a few
    milliseconds), so a bad install is said before anything starts."""
    missing = []
    for name in SERVER_MODULES:
        try:
            found = importlib.util.find_spec(name) is not None
        except ModuleNotFoundError:  # its parent package is missing
            found = False
        if not found:
            missing.append(name)
    return missing


@dataclasses.dataclass(frozen=True)
class Startup:
    settings: Settings
    tracing: TracingEnvironment
    sock: socket.socket
    command: list[str] | None


def prepare_to_serve(args: argparse.Namespace) -> Startup | int:
    """Settings, tracing and the bound admin socket for `serve` or `run`; the exit status (2, one
    line on stderr) when any of them is bad."""
    command: list[str] | None = None
    if args.mode == "run":
        command = args.command[1:] if args.command[:1] == ["--"] else args.command
        if not command:
            print("shutdown-sidecar: error: run: give the app's command after --", file=sys.stderr)
            return EXIT_USAGE
    try:
        settings = load_settings({spec.name: getattr(args, spec.name) for spec in setting_specs()})
        tracing = load_tracing_environment()
    except SettingsError as exc:
        print(f"shutdown-sidecar: error: {exc}", file=sys.stderr)
        return EXIT_USAGE

    # Imported after the settings are known good: a typo costs no server imports.
    from sidecar.admin.server import bind_admin_socket

    try:
        sock = bind_admin_socket(settings.host, settings.port)
    except OSError as exc:
        print(
            f"shutdown-sidecar: error: --port: cannot listen on {settings.host}:{settings.port}: {exc.strerror}",
            file=sys.stderr,
        )
        return EXIT_USAGE
    return Startup(settings, tracing, sock, command)


def simulate(args: argparse.Namespace) -> int:
    from sidecar.simulate.command import simulate as run_simulation
    from sidecar.simulate.options import options_from_args

    try:
        options = options_from_args(args)
    except SettingsError as exc:
        print(f"shutdown-sidecar simulate: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return run_simulation(options)
