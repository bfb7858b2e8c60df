"""The chart refuses an admin token the sidecar would refuse (it exits 2 at start), with its words."""

from __future__ import annotations

from typing import Any

import helm_python as helm
import pytest

from sidecar.config import parse_admin_token
from tests.charts.api_server import serving_secrets
from tests.charts.helm import CHART, NAMESPACE, RELEASE, container, kinds, manifests, render

BLOCK_SCALAR = helm.values_from_yaml("sidecar:\n  adminToken:\n    enabled: true\n    value: |\n      s3cret\n")
REFUSED = [
    pytest.param("s3cret\n", id="trailing-newline"),
    pytest.param("s3 cret", id="space"),
    pytest.param("s3crét", id="non-ascii"),
    pytest.param("s3\tcret", id="tab"),
    pytest.param("s3cret\x7f", id="delete"),
]


def sidecar_reason(token: str) -> str:
    """What the sidecar says when it refuses the token (its config parser, as at start-up)."""
    with pytest.raises(ValueError, match="must be") as refusal:
        parse_admin_token(token)
    return str(refusal.value)


def token_values(token: str, **more: str) -> dict[str, Any]:
    return {"sidecar": {"adminToken": {"enabled": True, "value": token, **more}}}


def hook_header(rendered: dict[str, str]) -> str:
    _, app = container(kinds(manifests(rendered))["Deployment"], "app")
    header: str = app["lifecycle"]["preStop"]["httpGet"]["httpHeaders"][0]["value"]
    return header


def render_with_cluster(kubeconfig: str, values: dict[str, Any]) -> dict[str, str]:
    """A render whose `lookup` reads the given (stand-in) API server, as `helm install` does."""
    with helm.Config(kubeconfig_content=kubeconfig, namespace=NAMESPACE) as config, helm.Chart.load(CHART) as chart:
        return config.render(chart, values, name=RELEASE, namespace=NAMESPACE)


def test_admin_token_block_scalar_value_is_refused_by_the_schema_in_the_sidecars_words() -> None:
    assert BLOCK_SCALAR["sidecar"]["adminToken"]["value"] == "s3cret\n"
    words = sidecar_reason("s3cret\n").removeprefix("must be ")
    with pytest.raises(helm.HelmValuesError) as failure:
        render(BLOCK_SCALAR)
    assert f"at '/sidecar/adminToken/value': value must be '{words}'" in str(failure.value)


@pytest.mark.parametrize("token", REFUSED)
def test_admin_token_value_the_sidecar_refuses_fails_the_schema_without_echoing_it(token: str) -> None:
    words = sidecar_reason(token).removeprefix("must be ")
    with pytest.raises(helm.HelmValuesError) as failure:
        render(token_values(token))
    assert words in str(failure.value)
    assert "s3" not in str(failure.value)  # the token is a secret: the message never shows it


@pytest.mark.parametrize("token", ["s3cret", "A-Za-z0-9._~+/=!#$%&'*^`|", "x" * 512])
def test_admin_token_value_the_sidecar_accepts_reaches_the_hook(token: str) -> None:
    assert parse_admin_token(token) == token
    assert hook_header(render(token_values(token))) == f"Bearer {token}"


def test_admin_token_value_that_passes_the_schema_by_its_message_is_refused_when_rendering() -> None:
    """The schema's refusal is a const holding the message; the template's own check catches that value."""
    message = sidecar_reason("the message")
    with pytest.raises(helm.HelmRenderError) as failure:
        render(token_values(message.removeprefix("must be ")))
    assert f"sidecar.adminToken.value: {message}" in str(failure.value)


def test_admin_token_existing_secret_with_a_trailing_newline_fails_the_render_in_the_sidecars_words() -> None:
    values = {"sidecar": {"adminToken": {"enabled": True, "existingSecret": "ops-token"}}}
    secrets = {(NAMESPACE, "ops-token"): {"token": "s3cret\n"}}
    with serving_secrets(secrets) as kubeconfig, pytest.raises(helm.HelmRenderError) as failure:
        render_with_cluster(kubeconfig, values)
    message, reason = str(failure.value), sidecar_reason("s3cret\n")
    assert f'Secret {NAMESPACE}/ops-token key "token" {reason}' in message
    assert "s3cret" not in message


def test_admin_token_existing_secret_the_sidecar_accepts_reaches_the_hook() -> None:
    values = {"sidecar": {"adminToken": {"enabled": True, "existingSecret": "ops-token"}}}
    with serving_secrets({(NAMESPACE, "ops-token"): {"token": "s3cret"}}) as kubeconfig:
        assert hook_header(render_with_cluster(kubeconfig, values)) == "Bearer s3cret"
