"""checkov, the policy scanner, from its own virtual environment (.venv-scan, made by .ci/run: its many
dependencies would clash with the project's dev pins): required under CI=true, skipped only elsewhere."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.charts.helm import ROOT


def checkov() -> str:
    candidates = [os.environ.get("CHECKOV", ""), str(ROOT / ".venv-scan" / "bin" / "checkov"), shutil.which("checkov")]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    message = "checkov not found (python3 -m venv .venv-scan && .venv-scan/bin/pip install checkov; see .ci/run)"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def scan(directory: Path) -> dict[str, Any]:
    """checkov's JSON report of every manifest in `directory` (Kubernetes checks only)."""
    result = subprocess.run(
        [checkov(), "--directory", str(directory), "--framework", "kubernetes", "--output", "json",
         "--skip-download"],
        capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    # Exit status 1 means "checks failed", which the tests judge themselves; anything else is an error.
    assert result.returncode in {0, 1}, result.stdout + result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    return report
