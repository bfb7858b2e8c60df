"""`shutdown-sidecar serve` as a real process receiving real signals and real HTTP requests."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.e2e.sidecar_process import SidecarProcess, wait_until

StartSidecar = Callable[..., SidecarProcess]


def live_until_exit(sidecar: SidecarProcess) -> list[tuple[float, int]]:
    """Probe /livez back to back until the process stops answering; (time, status) of each answer."""
    answers: list[tuple[float, int]] = []
    with httpx.Client(timeout=2) as client:
        while sidecar.proc.poll() is None:
            try:
                answers.append((time.monotonic(), client.get(sidecar.url("/livez")).status_code))
            except httpx.TransportError:
                break  # the server closed its listener after the report
    return answers


def test_serve_sigterm_fails_readiness_at_once_keeps_liveness_and_exits_after_the_report(
    start_sidecar: StartSidecar, tmp_path: Path
) -> None:
    log_path = tmp_path / "termination-log"
    sidecar = start_sidecar(
        "--grace-period", "3", "--prestop-delay", "1", "--report-reserve", "0.5", "--termination-log", str(log_path)
    )
    assert sidecar.get("/readyz").status_code == 200
    assert sidecar.get("/startupz").status_code == 200

    sent = sidecar.send_signal(signal.SIGTERM)
    wait_until(lambda: sidecar.get("/readyz").status_code == 503, 1, what="readiness to fail")
    answers = live_until_exit(sidecar)
    code = sidecar.wait(timeout=5)
    exited = time.monotonic()

    assert code == 0
    assert exited - sent < 3, "the process outlived the grace period"
    assert answers
    assert all(status == 200 for _, status in answers)
    assert answers[-1][0] - sent > 1, "liveness was not probed through the prestop delay"
    report = sidecar.report()
    assert report["trigger"] == "signal"
    assert report["outcome"] == "unknown"
    assert report["drain_end_source"] == "deadline"
    assert report["phases"]["prestop_delay"]["duration_seconds"] == pytest.approx(1, abs=0.05)
    assert report["phases"]["drain"]["duration_seconds"] == pytest.approx(1.5, abs=0.05)
    assert json.loads(log_path.read_text())["outcome"] == "unknown"
    phases = [line["to"] for line in sidecar.logs() if line.get("msg") == "phase changed"]
    assert phases == ["prestop_delay", "drain", "report", "done"]


def test_serve_second_sigterm_is_counted_and_ignored(start_sidecar: StartSidecar) -> None:
    sidecar = start_sidecar("--grace-period", "2.5", "--prestop-delay", "1", "--report-reserve", "0.5")
    sidecar.send_signal(signal.SIGTERM)
    sidecar.wait_for_log(lambda line: line.get("to") == "prestop_delay", 2)
    sidecar.send_signal(signal.SIGTERM)
    sidecar.wait_for_log(lambda line: line.get("msg") == "repeated signal ignored", 2)

    assert sidecar.metric("sidecar_signals_total", {"signal": "SIGTERM"}) == 2
    assert sidecar.get("/status").json()["phase"] == "prestop_delay"
    assert sidecar.wait(timeout=5) == 0
    report = sidecar.report()
    assert report["drain_end_source"] == "deadline"
    assert report["phases"]["drain"]["duration_seconds"] == pytest.approx(1, abs=0.05)


def test_serve_second_sigint_finishes_the_report_and_exits_at_once(start_sidecar: StartSidecar) -> None:
    sidecar = start_sidecar("--grace-period", "60", "--prestop-delay", "30")
    sidecar.send_signal(signal.SIGINT)
    sidecar.wait_for_log(lambda line: line.get("to") == "prestop_delay", 2)
    sent = sidecar.send_signal(signal.SIGINT)

    assert sidecar.wait(timeout=5) == 0
    assert time.monotonic() - sent < 2
    report = sidecar.report()
    assert report["drain_end_source"] == "interrupted"
    assert report["outcome"] == "unknown"


async def call_prestop_concurrently(url: str, callers: int) -> list[tuple[int, float, dict[str, object]]]:
    limits = httpx.Limits(max_connections=callers + 10)
    async with httpx.AsyncClient(timeout=10, limits=limits) as client:

        async def call() -> tuple[int, float, dict[str, object]]:
            response = await client.get(url)
            return response.status_code, time.time(), response.json()

        return await asyncio.gather(*(call() for _ in range(callers)))


@pytest.mark.anyio
async def test_serve_concurrent_prestop_callers_return_together_and_the_65th_gets_429(
    start_sidecar: StartSidecar,
) -> None:
    sidecar = start_sidecar("--grace-period", "5", "--prestop-delay", "1.5")
    results = await call_prestop_concurrently(sidecar.url("/prestop"), 100)

    held = [(received, body) for code, received, body in results if code == 200]
    refused = [code for code, _, _ in results if code == 429]
    assert len(held) == 64
    assert len(refused) == 36
    t0 = {body["t0"] for _, body in held}
    assert len(t0) == 1, "every caller must see the same t0"
    due = t0.pop() + 1.5  # type: ignore[operator]
    released = [float(body["released"]) for _, body in held]  # type: ignore[arg-type]
    assert min(released) >= due, "a caller was released before t0 + prestop delay"
    # One event releases them all; the spread is the time to answer 64 handlers, not a timer's.
    assert max(released) - min(released) < 0.25, "callers were not released together"
    assert min(at for at, _ in held) >= due
    assert sidecar.metric("sidecar_prestop_requests_total", {"code": "429"}) == 36
    assert sidecar.metric("sidecar_prestop_requests_total", {"code": "200"}) == 64


# Each response's `released` is read when its own handler resumes: one event wakes every caller at
# once, but they resume one after another, each after the previous one's answer has been written
# (about 2 ms, the README's benchmark; a loaded 2-core machine can add a scheduling slice). So
# release instants are compared with t0 + delay under this allowance, never with each other's
# `waited_seconds` (each counted from its own arrival).
RELEASE_LAG_SECONDS = 0.2


@pytest.mark.anyio
async def test_serve_prestop_retry_never_extends_the_delay_and_a_late_call_returns_at_once(
    start_sidecar: StartSidecar,
) -> None:
    delay = 1.0
    sidecar = start_sidecar("--grace-period", "4", "--prestop-delay", str(delay))
    async with httpx.AsyncClient(timeout=5) as client:
        first_call = asyncio.create_task(client.post(sidecar.url("/prestop")))
        # The retry must arrive mid-delay: wait until the shutdown has begun, not for a set time.
        deadline = time.monotonic() + 5
        while (await client.get(sidecar.url("/readyz"))).status_code != 503:
            assert time.monotonic() < deadline, "the first /prestop never started the shutdown"
        # Then half the delay: the scenario itself, not a synchronisation. A retry that restarted
        # the delay would be released half a delay late, far beyond RELEASE_LAG_SECONDS.
        await asyncio.sleep(delay / 2)
        retry = await client.post(sidecar.url("/prestop"))
        first = (await first_call).json()
    retry_body = retry.json()
    t0 = first["t0"]
    assert retry_body["t0"] == t0
    retry_arrived = retry_body["released"] - retry_body["waited_seconds"]
    assert t0 + 2 * RELEASE_LAG_SECONDS <= retry_arrived < t0 + delay, "the retry did not arrive mid-delay"
    for body in (first, retry_body):
        # Never early; late only by the wake-up lag, the same for the first call and the retry.
        assert t0 + delay <= body["released"] < t0 + delay + RELEASE_LAG_SECONDS, body

    late = sidecar.get("/prestop")
    assert late.status_code == 200
    assert late.json()["waited_seconds"] < 0.5  # at once: nothing to wait for
    assert late.json()["t0"] == t0


def test_serve_admin_token_is_enforced_and_a_refused_call_changes_nothing(start_sidecar: StartSidecar) -> None:
    token = "s3cret-token-value"
    sidecar = start_sidecar("--grace-period", "3", "--prestop-delay", "0.5", env={"SIDECAR_ADMIN_TOKEN": token})

    assert sidecar.post("/prestop").status_code == 401
    assert sidecar.get("/prestop", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert sidecar.post("/drain", json={"inflight": 1}).status_code == 401
    assert sidecar.get("/readyz").status_code == 200
    assert sidecar.get("/status").json()["phase"] == "running"
    assert sidecar.metric("sidecar_app_inflight") == 0

    assert sidecar.get("/prestop", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert sidecar.wait(timeout=5) == 0
    assert all(token not in raw for raw in sidecar.raw), "the admin token was logged"


def test_serve_drain_rejects_bad_input_unchanged_then_app_report_ends_the_drain(start_sidecar: StartSidecar) -> None:
    sidecar = start_sidecar("--grace-period", "20", "--prestop-delay", "0.5")
    assert sidecar.post("/drain", content=b"{not json").status_code == 400
    assert sidecar.post("/drain", json={"inflight": -1}).status_code == 400
    assert sidecar.post("/drain", json={"inflight": 2, "event": "finished"}).status_code == 400
    assert sidecar.post("/drain", content=b"x" * 100_000).status_code == 413
    assert sidecar.metric("sidecar_app_inflight") == 0
    assert sidecar.post("/drain", json={"event": "complete"}).status_code == 409
    assert sidecar.get("/status").json()["phase"] == "running"

    assert sidecar.post("/drain", json={"inflight": 3}).status_code == 200
    assert sidecar.metric("sidecar_app_inflight") == 3
    sidecar.send_signal(signal.SIGTERM)
    sidecar.wait_for_log(lambda line: line.get("to") == "drain", 3)
    assert sidecar.post("/drain", json={"inflight": 0, "event": "complete"}).json()["drain_end_accepted"] is True
    assert sidecar.wait(timeout=5) == 0

    report = sidecar.report()
    assert report["outcome"] == "clean"
    assert report["drain_end_source"] == "app_report"
    assert report["margin_seconds"] == pytest.approx(report["deadline"] - report["drain_end"], abs=1e-3)
    assert report["margin_seconds"] > 18


def test_serve_slow_clients_do_not_delay_probes(start_sidecar: StartSidecar) -> None:
    sidecar = start_sidecar()
    slow = []
    for _ in range(50):  # bounded: 50 loopback connections that never finish their headers
        conn = socket.create_connection(("127.0.0.1", sidecar.port))
        conn.sendall(b"GET /readyz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        slow.append(conn)
    try:
        with httpx.Client(timeout=2) as client:
            for _ in range(50):
                started = time.monotonic()
                assert client.get(sidecar.url("/readyz")).status_code == 200
                assert time.monotonic() - started < 0.5
    finally:
        for conn in slow:
            conn.close()


def test_serve_unwritable_termination_log_is_named_in_errors_and_not_fatal(start_sidecar: StartSidecar) -> None:
    sidecar = start_sidecar("--grace-period", "2", "--prestop-delay", "0.2", "--termination-log", "/proc/no/such/file")
    sidecar.send_signal(signal.SIGTERM)
    assert sidecar.wait(timeout=5) == 0
    errors = sidecar.report()["errors"]
    assert len(errors) == 1
    assert "termination log /proc/no/such/file" in errors[0]
