"""uvicorn's server and protocol without its command line. `import uvicorn` runs uvicorn/__init__,
which imports uvicorn.main for `uvicorn.run` and the `uvicorn` command: click, multiprocessing and
platform, about 20 ms of every start, for code the sidecar never calls. Before the first import of
uvicorn, a stand-in gives uvicorn/__init__ the three names it takes from uvicorn.main
(tests/admin/test_uvicorn_core.py fails when that list changes); `run` and `main` import the real
module if anyone ever calls them. Used by the command line only: a library import changes nothing."""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any, Final

MAIN_MODULE: Final = "uvicorn.main"
NAMES_FROM_MAIN: Final = ("Server", "main", "run")


def import_uvicorn_without_its_cli() -> None:
    """Import uvicorn, with uvicorn.main stood in for; nothing when uvicorn is already imported."""
    if "uvicorn" in sys.modules:
        return
    stand_in = types.ModuleType(MAIN_MODULE, "stands in for uvicorn.main until something calls it")

    def real_main() -> types.ModuleType:
        if sys.modules.get(MAIN_MODULE) is stand_in:
            del sys.modules[MAIN_MODULE]
        return importlib.import_module(MAIN_MODULE)

    def run(*args: Any, **kwargs: Any) -> Any:
        return real_main().run(*args, **kwargs)

    def main(*args: Any, **kwargs: Any) -> Any:
        return real_main().main(*args, **kwargs)

    def server_class(name: str) -> Any:
        if name != "Server":
            raise AttributeError(name)
        from uvicorn.server import Server  # uvicorn.main only re-exports it

        return Server

    stand_in.run = run  # type: ignore[attr-defined]
    stand_in.main = main  # type: ignore[attr-defined]
    stand_in.__getattr__ = server_class  # type: ignore[method-assign]
    sys.modules[MAIN_MODULE] = stand_in
    try:
        importlib.import_module("uvicorn")
    finally:
        if sys.modules.get(MAIN_MODULE) is stand_in:
            del sys.modules[MAIN_MODULE]
