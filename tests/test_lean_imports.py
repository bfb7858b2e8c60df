"""What `serve` and `run` import at start-up, read from a real sidecar once it answers /readyz:
none of the modules the footprint work left out (each costs every pod memory or start-up time),
and what was left out still works when it is needed."""

from __future__ import annotations

import ast
import importlib
import json
import os
import pkgutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# A real start (`python -m sidecar ...` as the image runs it), with a thread that waits for the
# first /readyz 200, writes the modules imported and the shared libraries mapped, and SIGTERMs it.
AT_READY = """
import gc, json, os, runpy, signal, socket, sys, threading, time

def at_ready():
    port = int(sys.argv[sys.argv.index("--port") + 1])
    while True:
        try:
            with socket.socket() as probe:  # an address as bytes: no idna codec imported here
                probe.settimeout(1)
                probe.connect(("127.0.0.1", port))
                probe.sendall(b"GET /readyz HTTP/1.1\\r\\nhost: x\\r\\n\\r\\n")
                if probe.recv(64).startswith(b"HTTP/1.1 200"):
                    break
        except OSError:
            pass
        time.sleep(0.005)
    with open("/proc/self/maps") as maps:
        libraries = sorted({line.split("/")[-1].strip() for line in maps if ".so" in line})
    with open(os.environ["AT_READY_OUT"], "w") as out:
        deferred = sorted(name for name, module in sys.modules.items() if "__getattr__" in vars(module or object))
        collector = {"enabled": gc.isenabled(), "frozen": gc.get_freeze_count(), "start_up_collections": collections}
        document = {"modules": sorted(sys.modules), "libraries": libraries, "deferred": deferred, "gc": collector}
        json.dump(document, out)
    os.kill(os.getpid(), signal.SIGTERM)

# Collections by generation from here until sidecar.cli freezes what start-up made (gc.freeze).
collections = [generation["collections"] for generation in gc.get_stats()]
real_freeze = gc.freeze

def freeze():
    for generation, stats in enumerate(gc.get_stats()):
        collections[generation] = stats["collections"] - collections[generation]
    real_freeze()

gc.freeze = freeze
threading.Thread(target=at_ready, daemon=True).start()
sys.argv = ["shutdown-sidecar", *sys.argv[1:]]
runpy.run_module("sidecar", run_name="__main__")
"""

# Each of these costs every pod memory or start-up time for something serve and run never do.
LEFT_OUT = (
    "ssl",  # asyncio's TLS: with libssl and libcrypto about 5 MB
    "_hashlib",  # libcrypto again (hmac, hashlib)
    "hmac",
    "http.client",  # Starlette's exceptions; prometheus_client's exposition
    "http.server",
    "email.message",
    "prometheus_client.exposition",
    "starlette.applications",  # routing, requests and responses are sidecar.admin.router's
    "anyio",
    "uvicorn.main",  # uvicorn's command line (click)
    "click",
    "email.utils",  # uvicorn.server's date header, banner and max-requests jitter
    "platform",
    "random",
    "shutil",  # argparse's help formatter
)
# Imported, their code not run (sidecar.lean_imports): uvicorn's protocol takes classes from the three
# modules, the sidecar imports submodules of the two packages.
DEFERRED = ("prometheus_client", "uvicorn", "uvicorn._types", "uvicorn.config", "uvicorn.server")


def modules_at_ready(tmp_path: Path, mode: str) -> dict[str, Any]:
    out = tmp_path / f"{mode}.json"
    script = tmp_path / "at_ready.py"
    script.write_text(AT_READY)
    command = ["--", sys.executable, "-c", "import time; time.sleep(60)"] if mode == "run" else []
    argv = [sys.executable, str(script), mode, "--host", "127.0.0.1", "--port", str(free_port())]
    argv += ["--termination-log", "", "--grace-period", "2", "--prestop-delay", "0", *command]
    # No SIDECAR_* or OTEL_* variable of the machine's (tracing would import the OpenTelemetry SDK).
    env = {"AT_READY_OUT": str(out), "PATH": "", "PYTHONPATH": os.environ.get("PYTHONPATH", "")}
    result = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False, env=env)
    assert out.exists(), result.stderr
    document: dict[str, Any] = json.loads(out.read_text())
    return document


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("mode", ["serve", "run"])
def test_lean_imports_the_sidecar_answers_probes_without_tls_hashlib_or_the_exposition_module(
    tmp_path: Path, mode: str
) -> None:
    found = modules_at_ready(tmp_path, mode)
    imported = set(found["modules"])
    assert [name for name in LEFT_OUT if name in imported] == []
    assert [name for name in DEFERRED if name not in found["deferred"]] == []
    assert "logging.config" not in imported  # the real uvicorn.config's
    assert not [library for library in found["libraries"] if library.startswith(("libssl", "libcrypto"))]


@pytest.mark.parametrize("mode", ["serve", "run"])
def test_lean_imports_the_collector_is_off_while_the_sidecar_starts_and_on_once_it_serves(
    tmp_path: Path, mode: str
) -> None:
    """sidecar.__main__ turns the cyclic collector off for the start-up (about 40 collections,
    4 ms, over objects that live until exit); sidecar.cli freezes those and turns it back on."""
    collector = modules_at_ready(tmp_path, mode)["gc"]
    assert collector["start_up_collections"] == [0, 0, 0]
    assert collector["frozen"] > 10_000
    assert collector["enabled"]


def run_python(code: str) -> str:
    # Without the coverage measurement pytest-cov starts in subprocesses (COV_CORE_*, and coverage's
    # own COVERAGE_PROCESS_START): coverage imports platform and more, which these checks look for.
    env = {name: value for name, value in os.environ.items() if not name.startswith(("COV_CORE_", "COVERAGE_"))}
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60, check=False, env=env
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_lean_imports_prometheus_client_runs_its_init_when_the_package_is_first_used() -> None:
    out = run_python(
        """
        import sys
        from sidecar.lean_imports import defer_server_packages, is_deferred
        defer_server_packages()
        from prometheus_client.metrics import Counter
        from prometheus_client.registry import CollectorRegistry
        import prometheus_client
        assert is_deferred(prometheus_client) and "prometheus_client.exposition" not in sys.modules
        registry = CollectorRegistry()
        Counter("c", "a counter", registry=registry).inc()
        from prometheus_client import generate_latest  # the real __init__ runs now
        assert not is_deferred(prometheus_client) and prometheus_client.Counter is Counter
        print(generate_latest(registry).decode().splitlines()[2])
        """
    )
    assert out == "c_total 1.0\n"


def test_lean_imports_uvicorn_serves_the_protocol_without_its_server_and_runs_whole_when_used() -> None:
    out = run_python(
        """
        import sys
        from sidecar.lean_imports import defer_server_packages, is_deferred
        defer_server_packages()
        import sidecar.admin.server
        import uvicorn, uvicorn.config, uvicorn.server
        assert all(map(is_deferred, (uvicorn, uvicorn._types, uvicorn.config, uvicorn.server)))
        assert not {"click", "uvicorn.main", "email.utils", "platform"} & set(sys.modules)
        config = uvicorn.Config("no_such_module:app", log_config=None)  # the real one, all of it run now
        assert not any(map(is_deferred, (uvicorn, uvicorn._types, uvicorn.config, uvicorn.server)))
        assert type(config) is uvicorn.config.Config is uvicorn.Config and uvicorn.Server is uvicorn.server.Server
        assert sys.modules["uvicorn.config"] is uvicorn.config and "click" in sys.modules
        print(config.port, sorted(uvicorn.config.LOGGING_CONFIG)[0])
        try:
            uvicorn.run("no_such_module:app")
        except SystemExit as exc:
            print(exc.code)
        """
    )
    assert out == "8000 disable_existing_loggers\n3\n"  # uvicorn's STARTUP_FAILURE


def imports_run_at_import(tree: ast.Module) -> Iterator[ast.ImportFrom]:
    """The `from ... import` statements a module runs when it is imported: not those in functions
    (they run when called, by which time using a deferred module is what is meant), nor those for
    type checkers only."""
    pending: list[ast.AST] = [tree]
    while pending:
        node = pending.pop()
        if isinstance(node, ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            pending.extend(node.orelse)
        elif not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            pending.extend(ast.iter_child_nodes(node))


def test_lean_imports_deferred_modules_have_every_name_the_modules_imported_take_from_them() -> None:
    """Every `from X import names` of the modules `serve` imports, where X is deferred: each name
    is a stand-in or a submodule (anything else would run X's code at start-up, or fail when uvicorn
    renames a class). Fails when uvicorn or prometheus-client take another name."""
    from sidecar.lean_imports import DEFERRED_PACKAGES

    out = run_python(
        """
        import sys
        from sidecar.lean_imports import defer_server_packages, is_deferred
        defer_server_packages()
        import sidecar.assembly
        for name, module in sorted(sys.modules.items()):  # those whose code ran
            if name.startswith(("uvicorn", "prometheus_client")) and module.__file__ and not is_deferred(module):
                print(name, module.__file__, "__path__" in vars(module))
        """
    )
    stand_ins = {name: set(classes) for modules in DEFERRED_PACKAGES.values() for name, classes in modules.items()}
    stand_ins.update({package: set() for package in DEFERRED_PACKAGES})
    taken: dict[str, set[str]] = {}
    for line in out.splitlines():
        name, path, is_package = line.split()
        package = name if is_package == "True" else name.rpartition(".")[0]
        for node in imports_run_at_import(ast.parse(Path(path).read_text())):
            source = node.module or ""
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                source = f"{base}.{source}" if source else base
            if source in stand_ins:
                taken.setdefault(source, set()).update(alias.name for alias in node.names)
    assert taken.keys() == stand_ins.keys() - {"uvicorn"}, "a deferred module is no longer needed"
    for source, names in taken.items():
        module = importlib.import_module(source)
        submodules = {info.name for info in pkgutil.iter_modules(getattr(module, "__path__", []))}
        assert sorted(names - stand_ins[source] - submodules) == [], source
        assert [name for name in stand_ins[source] if not hasattr(module, name)] == [], source


def test_lean_imports_asyncio_refuses_a_tls_transport_in_words_and_ssl_still_imports() -> None:
    out = run_python(
        """
        from sidecar.lean_imports import import_asyncio_without_tls
        import_asyncio_without_tls()
        import asyncio, socket, sys
        assert "ssl" not in sys.modules
        listener = socket.create_server(("127.0.0.1", 0))

        async def connect():
            try:
                await asyncio.open_connection(*listener.getsockname(), ssl=True)
            except RuntimeError as exc:
                print(exc)

        asyncio.run(connect())
        import ssl, urllib.request  # what the Pushgateway's and OTLP's threads import
        print(ssl.create_default_context().verify_mode.name)
        """
    )
    assert out.splitlines() == ["stdlib ssl module not available", "CERT_REQUIRED"]
