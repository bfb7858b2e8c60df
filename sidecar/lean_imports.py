"""The modules `serve` and `run` start with, imported without the parts they never use, for the
footprint of a sidecar in every pod: asyncio without its TLS support, and the server packages with
the code they do not need deferred until something uses it. Each is a no-op when the module is
already imported, so a library import of the sidecar (tests, an app) changes nothing; only the
command line calls these, before anything else imports them. What they leave out is imported,
whole, on first use."""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import types
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

# asyncio imports ssl (if it can) for TLS transports: the ssl module, libssl and libcrypto, about
# 5 MB resident and 6 ms. The admin port, the app port's watch and every sink that speaks HTTP
# from a thread (Pushgateway, OTLP) use no TLS transport of asyncio's.
TLS_MODULE: Final = "ssl"

# Packages whose modules below are deferred: a module object is made from the real module's spec
# but its code is not run. Its submodules import as usual; the names listed (classes and type
# aliases) are there at once, as stand-in classes, because other modules take them when they are
# imported (to use in annotations only; constructing a stand-in constructs the real thing). The
# first other name asked of any of them runs the real code of them all, into the same module
# objects, as an ordinary import would have: the listed modules first, in their order (each before
# those that import from it), the package last.
DEFERRED_PACKAGES: Final[Mapping[str, Mapping[str, Sequence[str]]]] = {
    # Its __init__ imports prometheus_client.exposition for its HTTP servers and Pushgateway
    # client (http.server, wsgiref, urllib.request, hashlib, email: about 1.5 MB and 15 ms); the
    # sidecar uses metrics, registry, metrics_core and openmetrics.exposition, all submodules.
    "prometheus_client": {},
    # Its __init__ imports uvicorn.main for `uvicorn.run` and the `uvicorn` command (click,
    # multiprocessing, platform: about 20 ms). uvicorn.config offers TLS, log configuration files and
    # reloading (ssl, libssl, libcrypto, logging.config, configparser: about 5 MB); uvicorn.server
    # a Server that sidecar.admin.server does without (email.utils, platform, random: about 7 ms).
    # The admin port uses uvicorn's httptools protocol only, which takes Config and ServerState from
    # them for its annotations, and the ASGI types from uvicorn._types (about 60 TypedDicts and
    # Protocols: 1.5 ms), as do the two modules it imports.
    "uvicorn": {
        "uvicorn._types": (
            *("ASGI3Application", "ASGIReceiveEvent", "ASGISendEvent", "HTTPRequestEvent", "HTTPScope"),
            *("ASGIReceiveCallable", "ASGISendCallable", "Scope", "WWWScope"),
        ),
        "uvicorn.config": ("Config",),
        "uvicorn.server": ("ServerState",),
    },
}


def import_asyncio_without_tls() -> None:
    """Import asyncio as on a Python built without ssl: asyncio's modules then hold `ssl = None`
    (their own fallback), and a TLS transport asked of the event loop raises "stdlib ssl module not
    available". `ssl` itself stays importable: urllib and the OTLP exporter import it when they need it."""
    if "asyncio" in sys.modules or TLS_MODULE in sys.modules:
        return
    sys.modules[TLS_MODULE] = None  # type: ignore[assignment]  # import ssl raises ImportError
    try:
        importlib.import_module("asyncio")
    finally:
        del sys.modules[TLS_MODULE]


def defer_server_packages() -> None:
    """Defer the packages of DEFERRED_PACKAGES (each: nothing when it, or a module of it listed
    there, is imported already, or when it is not installed)."""
    for package, stand_ins in DEFERRED_PACKAGES.items():
        defer_package(package, stand_ins)


def defer_package(package: str, stand_ins: Mapping[str, Sequence[str]]) -> None:
    """Put `package`, and the modules of it in `stand_ins` (module name: names), in
    sys.modules with their code not run; see DEFERRED_PACKAGES."""
    if package in sys.modules or any(name in sys.modules for name in stand_ins):
        return
    spec = importlib.util.find_spec(package)
    if spec is None or spec.loader is None:
        return  # not installed: the ordinary import raises where it is needed
    root = importlib.util.module_from_spec(spec)
    sys.modules[package] = root
    modules = []
    for name in stand_ins:
        module_spec = importlib.util.find_spec(name)  # through the package's __path__: its code not run
        if module_spec is None:
            continue
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module
        setattr(root, name.rpartition(".")[2], module)  # `package.module.X` finds it
        modules.append(module)
    deferred = [*modules, root]  # the order their code runs in
    started = False

    def run(module: types.ModuleType) -> None:
        """Run them all, in order; one asked for by the code of another meanwhile runs at once."""
        nonlocal started
        if started:
            run_real_code(module, stand_ins.get(module.__name__, ()))
            return
        started = True
        for each in deferred:
            run_real_code(each, stand_ins.get(each.__name__, ()))

    for module in deferred:
        vars(module)["__getattr__"] = on_first_use(module, run)
        for name in stand_ins.get(module.__name__, ()):
            setattr(module, name, stand_in_class(module, name, run))


def on_first_use(module: types.ModuleType, run: Callable[[types.ModuleType], None]) -> Callable[[str], Any]:
    """The deferred module's __getattr__: a name it lacks is looked up after the real code ran."""
    paths = module.__spec__.submodule_search_locations if module.__spec__ is not None else None
    submodules = {entry.partition(".")[0] for path in paths or () for entry in os.listdir(path)}

    def first_use(name: str) -> Any:
        # The import system's own questions are not a use; `from . import values` asks the package
        # for its submodule first and imports it when the package has no such name.
        if name.startswith("__") or name in submodules:
            raise AttributeError(name)
        run(module)
        return getattr(module, name)

    return first_use


def stand_in_class(module: types.ModuleType, name: str, run: Callable[[types.ModuleType], None]) -> type:
    def construct_the_real_class(cls: type, *args: Any, **kwargs: Any) -> Any:
        run(module)
        return getattr(module, name)(*args, **kwargs)

    doc = f"Stands in for {module.__name__}.{name} until the module's code runs (on first use)."
    return type(name, (), {"__new__": construct_the_real_class, "__module__": module.__name__, "__doc__": doc})


def run_real_code(module: types.ModuleType, stand_ins: Sequence[str]) -> None:
    """Run the module's own code into it, once; its stand-ins go first (the real code defines them)."""
    namespace = vars(module)
    if namespace.pop("__getattr__", None) is None:
        return  # ran already, or is running
    for name in stand_ins:
        namespace.pop(name, None)
    spec = module.__spec__
    if spec is None or spec.loader is None:
        raise ImportError(f"{module.__name__} lost its loader", name=module.__name__)
    spec.loader.exec_module(module)


def is_deferred(module: types.ModuleType) -> bool:
    """Whether the module's own code has not run yet (for tests)."""
    return "__getattr__" in vars(module)
