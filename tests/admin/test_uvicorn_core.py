from __future__ import annotations

import ast
import inspect
import subprocess
import sys

import uvicorn

from sidecar.admin.uvicorn_core import MAIN_MODULE, NAMES_FROM_MAIN


def test_uvicorn_core_uvicorn_init_takes_only_these_names_from_its_main() -> None:
    tree = ast.parse(inspect.getsource(uvicorn))
    taken = [
        alias.name
        for node in tree.body
        if isinstance(node, ast.ImportFrom) and node.module == MAIN_MODULE
        for alias in node.names
    ]
    assert sorted(taken) == sorted(NAMES_FROM_MAIN)


def test_uvicorn_core_imports_the_server_without_click_and_run_still_works() -> None:
    script = """
import sys
from sidecar.admin.uvicorn_core import import_uvicorn_without_its_cli
import_uvicorn_without_its_cli()
import uvicorn, uvicorn.server
from sidecar.admin.server import AdminServer
assert uvicorn.Server is uvicorn.server.Server
assert "click" not in sys.modules and "uvicorn.main" not in sys.modules, sorted(sys.modules)
try:
    uvicorn.run("no_such_module:app")  # the real uvicorn.main, imported on the first call
except SystemExit:
    pass
assert "click" in sys.modules
print("ok")
"""
    result = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True, text=True, timeout=60)
    assert result.stdout == "ok\n", result.stderr
