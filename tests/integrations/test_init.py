"""Importing the integrations loads none of the sidecar's server dependencies: the app's image
installs shutdown-sidecar for them, not for a second web stack."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from sidecar.integrations import DEFAULT_SIDECAR_URL, sidecar_url, usable_sidecar_url

HEAVY = ("starlette", "uvicorn", "prometheus_client", "opentelemetry", "httptools", "gunicorn", "celery")


def test_integrations_import_no_server_dependency() -> None:
    code = (
        "import json, sys\n"
        "import sidecar.integrations, sidecar.integrations.asgi, sidecar.integrations.lifespan\n"
        "import sidecar.integrations.wsgi, sidecar.integrations.gunicorn, sidecar.integrations.celery\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    loaded = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, check=True).stdout)
    heavy = [name for name in loaded if name.split(".")[0] in HEAVY]
    assert heavy == []


@pytest.mark.parametrize(
    ("given", "env", "expected"),
    [
        pytest.param("http://sidecar:1", "http://env:2", "http://sidecar:1", id="argument-wins"),
        pytest.param(None, "http://env:2", "http://env:2", id="environment"),
        pytest.param(None, None, DEFAULT_SIDECAR_URL, id="default"),
    ],
)
def test_integrations_sidecar_url_from_argument_environment_or_default(
    given: str | None, env: str | None, expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if env is None:
        monkeypatch.delenv("SHUTDOWN_SIDECAR_URL", raising=False)
    else:
        monkeypatch.setenv("SHUTDOWN_SIDECAR_URL", env)
    assert sidecar_url(given) == expected


def test_integrations_an_unusable_sidecar_url_is_said_once_without_its_credentials(
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = "https://admin:s3cret@sidecar:9180"
    assert usable_sidecar_url(url) is None
    assert usable_sidecar_url(url) is None
    [record] = [r for r in caplog.records if "sidecar url unusable" in r.getMessage()]
    assert "s3cret" not in record.getMessage()
    assert "'https://***@sidecar:9180'" in record.getMessage()
    assert usable_sidecar_url("http://sidecar:9180/") == "http://sidecar:9180/"
