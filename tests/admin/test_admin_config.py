"""The admin server without uvicorn.config: its stand-in gives uvicorn's modules the names they take
at import, AdminConfig every setting uvicorn's server and protocol read; these fail when uvicorn
changes either."""

from __future__ import annotations

import ast
import importlib
import inspect
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import uvicorn
from starlette.responses import PlainTextResponse
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from sidecar.admin.server import build_config
from sidecar.admin.uvicorn_core import CONFIG_MODULE, NAMES_FROM_CONFIG, STARTUP_FAILURE


def run_python(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def uvicorn_modules_the_admin_server_imports() -> list[str]:
    out = run_python(
        """
        import sys
        from sidecar.admin.uvicorn_core import import_uvicorn_without_its_cli
        import_uvicorn_without_its_cli()
        import sidecar.admin.server
        assert "LOGGING_CONFIG" not in vars(sys.modules["uvicorn.config"]), "the real uvicorn.config was imported"
        print(" ".join(name for name in sys.modules if name.startswith("uvicorn") and name != "uvicorn.config"))
        """
    )
    return out.split()


def test_admin_config_uvicorn_takes_only_these_names_from_its_config() -> None:
    taken: dict[str, list[str]] = {}
    for name in uvicorn_modules_the_admin_server_imports():
        tree = ast.parse(Path(str(importlib.import_module(name).__file__)).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module in (CONFIG_MODULE, "uvicorn"):
                names = [alias.name for alias in node.names]
                if node.module == CONFIG_MODULE or "Config" in names:
                    taken[name] = [*taken.get(name, []), *(names if node.module == CONFIG_MODULE else ["Config"])]
    assert taken, "no uvicorn module imports from uvicorn.config any more: the stand-in can go"
    assert {name for names in taken.values() for name in names} <= set(NAMES_FROM_CONFIG), taken
    from uvicorn.config import STARTUP_FAILURE as REAL_STARTUP_FAILURE

    assert STARTUP_FAILURE == REAL_STARTUP_FAILURE


def test_admin_config_has_every_setting_uvicorn_reads() -> None:
    """What uvicorn's Server reads before our startup() and what its httptools protocol reads,
    anywhere: each must be an AdminConfig attribute."""
    sources = [inspect.getsource(uvicorn.Server.__init__), inspect.getsource(uvicorn.Server._serve)]
    sources.append(inspect.getsource(HttpToolsProtocol))
    read = {match for source in sources for match in re.findall(r"\bconfig\.(\w+)", source)}
    config = build_config(PlainTextResponse("ok"))
    assert read, "uvicorn no longer reads its config as config.<name>: this test must be rewritten"
    assert sorted(name for name in read if not hasattr(config, name)) == []


def test_admin_config_uvicorn_config_is_real_for_whoever_builds_one() -> None:
    out = run_python(
        """
        import sys
        from sidecar.admin.uvicorn_core import import_uvicorn_without_its_cli
        import_uvicorn_without_its_cli()
        import uvicorn
        assert "LOGGING_CONFIG" not in vars(sys.modules["uvicorn.config"])
        config = uvicorn.Config("no_such_module:app", log_config=None)
        import uvicorn.config
        assert type(config) is uvicorn.config.Config and sys.modules["uvicorn.config"] is uvicorn.config
        print(config.port, sorted(uvicorn.config.LOGGING_CONFIG)[0])
        """
    )
    assert out == "8000 disable_existing_loggers\n"
