"""The standard and third-party modules `serve` and `run` start with, imported without the parts
they never use, for the footprint of a sidecar in every pod: asyncio without its TLS support, and
prometheus_client without its exposition module (sidecar.admin.uvicorn_core does the same for
uvicorn). Each is a no-op when the module is already imported, so a library import of the sidecar
(tests, an app) changes nothing; only the command line calls these, before anything else imports
them. What they leave out is imported, whole, on first use."""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import types
from typing import Any, Final

# asyncio imports ssl (if it can) for TLS transports: the ssl module, libssl and libcrypto, about
# 5 MB resident and 6 ms. The admin port, the app port's watch and every sink that speaks HTTP
# from a thread (Pushgateway, OTLP) use no TLS transport of asyncio's.
TLS_MODULE: Final = "ssl"
PROMETHEUS_PACKAGE: Final = "prometheus_client"


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


def import_prometheus_client_without_exposition() -> None:
    """Make `prometheus_client` importable without running its package __init__, which imports
    prometheus_client.exposition for its HTTP servers and Pushgateway client (http.server, wsgiref,
    urllib.request, hashlib, email: about 1.5 MB and 15 ms). Submodules (metrics, registry,
    metrics_core, openmetrics.exposition) import as usual; the first other name asked of the package
    (`prometheus_client.generate_latest`, `from prometheus_client import push_to_gateway`) runs the
    real __init__ into it, as an ordinary import would have."""
    if PROMETHEUS_PACKAGE in sys.modules:
        return
    spec = importlib.util.find_spec(PROMETHEUS_PACKAGE)
    if spec is None or spec.loader is None:
        return  # not installed: the ordinary import raises where it is needed
    loader = spec.loader
    package = importlib.util.module_from_spec(spec)
    # `from . import values` asks the package for its submodule first: not a use of the package.
    paths = spec.submodule_search_locations or ()
    submodules = {entry.partition(".")[0] for path in paths for entry in os.listdir(path)}

    def run_init_on_first_use(name: str) -> Any:
        if name in submodules or name.startswith("__"):  # the import system's own questions
            raise AttributeError(name)
        vars(package).pop("__getattr__")  # once: the real __init__ defines every other name
        loader.exec_module(package)
        return getattr(package, name)

    package.__getattr__ = run_init_on_first_use  # type: ignore[method-assign]
    sys.modules[PROMETHEUS_PACKAGE] = package


def is_stood_in(module: types.ModuleType) -> bool:
    """Whether `module` still waits for its __init__ (for tests)."""
    return "__getattr__" in vars(module)
