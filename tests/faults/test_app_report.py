"""POST /drain bodies that are valid JSON but no drain report: answered 400 saying what is wrong."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.e2e.sidecar_process import SidecarProcess

StartSidecar = Callable[..., SidecarProcess]


@pytest.mark.parametrize(
    ("body", "error"),
    [
        # Over Python's 4,300-digit limit for integers: it was answered "body is not JSON".
        pytest.param(b'{"inflight": 1' + b"0" * 4999 + b"}", '"inflight" must be a whole number', id="inflight"),
        pytest.param(b'{"inflight": -' + b"9" * 5000 + b"}", '"inflight" must be a whole number', id="negative"),
        pytest.param(b'{"inflight": 1, "worker": ' + b"7" * 5000 + b"}", '"worker" must be', id="worker"),
    ],
)
def test_app_report_a_5000_digit_number_is_named_and_changes_nothing(
    start_sidecar: StartSidecar, body: bytes, error: str
) -> None:
    sidecar = start_sidecar()
    answer = sidecar.post("/drain", content=body, headers={"Content-Type": "application/json"})
    assert answer.status_code == 400
    assert error in answer.json()["error"]
    assert sidecar.metric("sidecar_app_inflight") == 0
    assert sidecar.post("/drain", json={"inflight": 2}).status_code == 200
    assert sidecar.metric("sidecar_app_inflight") == 2
