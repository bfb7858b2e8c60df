"""uvicorn's server and protocol without its command line and its Config. `import uvicorn` runs
uvicorn/__init__, which imports uvicorn.main for `uvicorn.run` and the `uvicorn` command (click,
multiprocessing, platform: about 20 ms of every start) and uvicorn.config, whose Config offers TLS,
log configuration files and reloading (ssl, libssl and libcrypto, logging.config, configparser:
about 5 MB of every pod's memory), none of which the admin port uses: it is built from
sidecar.admin.server.AdminConfig. Before the first import of uvicorn, stand-ins give uvicorn's
modules the names they take from those two (tests/admin/test_uvicorn_core.py fails when the lists
change); calling `run`, `main` or `Config`, or asking the stand-in for any other name, imports the
real module. Used by the command line only: a library import changes nothing."""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any, Final

MAIN_MODULE: Final = "uvicorn.main"
NAMES_FROM_MAIN: Final = ("Server", "main", "run")
CONFIG_MODULE: Final = "uvicorn.config"
# What uvicorn/__init__, uvicorn.server, uvicorn.lifespan.off and the httptools protocol take from
# uvicorn.config when they are imported.
NAMES_FROM_CONFIG: Final = ("Config", "STARTUP_FAILURE")
STARTUP_FAILURE: Final = 3  # uvicorn.config's value; the admin server never exits with it


def import_uvicorn_without_its_cli() -> None:
    """Import uvicorn, with uvicorn.main and uvicorn.config stood in for; nothing when uvicorn is
    already imported."""
    if "uvicorn" in sys.modules:
        return
    config_stand_in = stand_in_for_config()
    main_stand_in = stand_in_for_main(config_stand_in)
    sys.modules[CONFIG_MODULE] = config_stand_in
    sys.modules[MAIN_MODULE] = main_stand_in
    try:
        package = importlib.import_module("uvicorn")
    finally:
        if sys.modules.get(MAIN_MODULE) is main_stand_in:
            del sys.modules[MAIN_MODULE]
    if not hasattr(package, "config"):  # `uvicorn.config.X` then imports the real module too
        setattr(package, "config", config_stand_in)  # noqa: B010 (mypy knows no such name)


def real_module(name: str, stand_in: types.ModuleType) -> types.ModuleType:
    """The real module `name`, imported in place of its stand-in on first need."""
    if sys.modules.get(name) is stand_in:
        del sys.modules[name]
    return importlib.import_module(name)


def stand_in_for_config() -> types.ModuleType:
    stand_in = types.ModuleType(CONFIG_MODULE, "stands in for uvicorn.config until something needs it")

    class Config:
        """uvicorn.Config for whoever builds one: the real module's, imported then."""

        def __new__(cls, *args: Any, **kwargs: Any) -> Any:
            return real_module(CONFIG_MODULE, stand_in).Config(*args, **kwargs)

    def any_other_name(name: str) -> Any:
        # The import system's own questions are not a use: `from uvicorn.config import Config` asks for __path__.
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(real_module(CONFIG_MODULE, stand_in), name)

    stand_in.Config = Config  # type: ignore[attr-defined]
    stand_in.STARTUP_FAILURE = STARTUP_FAILURE  # type: ignore[attr-defined]
    stand_in.__getattr__ = any_other_name  # type: ignore[method-assign]
    return stand_in


def stand_in_for_main(config_stand_in: types.ModuleType) -> types.ModuleType:
    stand_in = types.ModuleType(MAIN_MODULE, "stands in for uvicorn.main until something calls it")

    def real_main() -> types.ModuleType:
        real_module(CONFIG_MODULE, config_stand_in)  # uvicorn.main takes a dozen names from it
        return real_module(MAIN_MODULE, stand_in)

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
    return stand_in
