"""The admin port under hostile and faulty input, against a real process on loopback: probes and
/prestop keep answering, within the kubelet's 1 s probe timeout, and the shutdown still ends in a
report. Correctness only; the latency figures are in tests/benchmarks/test_faults_benchmark.py."""

from __future__ import annotations

import itertools
import signal
from collections.abc import Callable

import httpx
import pytest

from tests.e2e.sidecar_process import SidecarProcess
from tests.faults.hostile import (
    HOSTILE_OPENERS,
    RequestFlood,
    fresh_request,
    hold_connections,
    peak_rss_mb,
    send_huge_header,
)

StartSidecar = Callable[..., SidecarProcess]
KUBELET_PROBE_TIMEOUT_SECONDS = 1.0
HELD_CONNECTIONS = 2000
# A descriptor limit the sidecar cannot raise, and a burst of more connections than it holds.
LOW_FD_LIMIT = 256
LOW_FD_BURST = 400


def assert_answers(port: int, method: str, path: str, status: int, **kwargs: object) -> None:
    answered, seconds = fresh_request(port, method, path, timeout=5, **kwargs)  # type: ignore[arg-type]
    assert answered == status, f"{method} {path}: {answered} after {seconds:.3f} s"
    assert seconds < KUBELET_PROBE_TIMEOUT_SECONDS, f"{method} {path} took {seconds:.3f} s"


@pytest.mark.timeout(120)
@pytest.mark.parametrize("state", list(HOSTILE_OPENERS))
def test_admin_port_probes_and_prestop_answer_with_2000_hostile_connections_held(
    start_sidecar: StartSidecar, state: str
) -> None:
    sidecar = start_sidecar("--grace-period", "5", "--prestop-delay", "0", "--report-reserve", "0.5")
    with hold_connections(sidecar.port, HOSTILE_OPENERS[state], HELD_CONNECTIONS) as held:
        assert held == HELD_CONNECTIONS
        for _ in range(5):
            assert_answers(sidecar.port, "GET", "/livez", 200)
            assert_answers(sidecar.port, "GET", "/readyz", 200)
        assert_answers(sidecar.port, "POST", "/prestop", 200)
        assert_answers(sidecar.port, "GET", "/readyz", 503)
        assert_answers(sidecar.port, "GET", "/livez", 200)
        assert sidecar.wait(timeout=10) == 0
    assert sidecar.report()["trigger"] == "prestop"


@pytest.mark.timeout(120)
def test_admin_port_a_burst_past_the_descriptor_limit_neither_stalls_probes_nor_floods_the_log(
    start_sidecar: StartSidecar,
) -> None:
    """More connections queued than the sidecar has descriptors: asyncio's accept loop took them all
    in one turn, hit EMFILE, logged a traceback per failed accept and stopped accepting for 1 s."""
    sidecar = start_sidecar(prefix=["prlimit", f"--nofile={LOW_FD_LIMIT}:{LOW_FD_LIMIT}", "--"])
    for _ in range(3):
        with hold_connections(sidecar.port, HOSTILE_OPENERS["idle"], LOW_FD_BURST) as held:
            assert held == LOW_FD_BURST
            answered, seconds = fresh_request(sidecar.port, "GET", "/readyz", timeout=5)
            assert answered == 200
            # The old loop's pause was 1 s, whatever the load; half the kubelet's timeout is plenty.
            assert seconds < KUBELET_PROBE_TIMEOUT_SECONDS / 2, f"/readyz took {seconds:.3f} s"
    assert_answers(sidecar.port, "GET", "/livez", 200)
    assert not [raw for raw in sidecar.raw if "Traceback" in raw or "out of system resource" in raw]
    refusals = [line["ts"] for line in sidecar.logs() if line.get("msg") == "admin connections refused"]
    assert all(later - earlier >= 0.99 for earlier, later in itertools.pairwise(refusals)), "more than one a second"


def start_without_host(*args: str) -> SidecarProcess:
    sidecar = SidecarProcess(["serve", "--port", "0", "--termination-log", "", *args])
    sidecar.port = int(sidecar.wait_for_log(lambda line: line.get("msg") == "sidecar ready", 10)["port"])
    return sidecar


def answers_on(address: str, port: int) -> int | str:
    try:
        return httpx.get(f"http://{address}:{port}/readyz", timeout=5).status_code
    except httpx.ConnectError:
        return "refused"


@pytest.mark.timeout(60)
def test_admin_port_default_host_answers_probes_on_ipv6_and_ipv4() -> None:
    """In an IPv6-only or IPv6-first cluster the kubelet probes the pod's IPv6 address: the default
    0.0.0.0 refused every probe and preStop hook there."""
    sidecar = start_without_host()
    try:
        assert answers_on("[::1]", sidecar.port) == 200
        assert answers_on("127.0.0.1", sidecar.port) == 200
    finally:
        sidecar.close()


@pytest.mark.timeout(60)
def test_admin_port_explicit_ipv4_host_listens_on_ipv4_only() -> None:
    sidecar = start_without_host("--host", "0.0.0.0")
    try:
        assert answers_on("127.0.0.1", sidecar.port) == 200
        assert answers_on("[::1]", sidecar.port) == "refused"
    finally:
        sidecar.close()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("path", ["/metrics", "/status"])
def test_admin_port_probes_answer_during_a_flood_of_requests(start_sidecar: StartSidecar, path: str) -> None:
    sidecar = start_sidecar()
    with RequestFlood(sidecar.port, 256, path) as flood:
        for _ in range(10):
            assert_answers(sidecar.port, "GET", "/livez", 200)
            assert_answers(sidecar.port, "GET", "/readyz", 200)
    assert flood.requests >= 256


@pytest.mark.timeout(120)
def test_admin_port_huge_headers_get_431_and_memory_stays_flat(start_sidecar: StartSidecar) -> None:
    sidecar = start_sidecar()
    before = peak_rss_mb(sidecar.proc.pid)
    assert [send_huge_header(sidecar.port, 50 * 1024 * 1024) for _ in range(2)] == ["431", "431"]
    assert peak_rss_mb(sidecar.proc.pid) < before + 20, "the header was buffered"
    assert_answers(sidecar.port, "GET", "/livez", 200)
    assert sidecar.metric("sidecar_admin_connections_closed_total", {"reason": "head_too_large"}) == 2


@pytest.mark.parametrize("path", ["/livez", "/readyz", "/status", "/metrics", "/prestop", "/drain"])
def test_admin_port_a_body_over_8_kib_is_413_on_every_path_and_starts_nothing(
    start_sidecar: StartSidecar, path: str
) -> None:
    sidecar = start_sidecar()
    method = "GET" if path not in ("/prestop", "/drain") else "POST"
    assert_answers(sidecar.port, method, path, 413, body=b"x" * 100_000)
    assert sidecar.get("/status").json()["phase"] == "running"


def test_admin_port_malformed_input_gets_an_answer_and_changes_nothing(start_sidecar: StartSidecar) -> None:
    sidecar = start_sidecar()
    assert_answers(sidecar.port, "GET", "/prestop/", 404, headers={"Host": "evil.example"})
    huge = b'{"inflight": ' + b"9" * 400 + b"}"
    assert_answers(sidecar.port, "POST", "/drain", 400, body=huge)
    assert_answers(sidecar.port, "POST", "/drain", 400, body=b'{"inflight": 1e308}')
    assert_answers(sidecar.port, "POST", "/drain", 400, body=b"[" * 5000)
    assert_answers(sidecar.port, "GET", "/livez", 400, headers={"Content-Length": "-5"})
    assert sidecar.metric("sidecar_app_inflight") == 0
    assert sidecar.get("/status").json()["phase"] == "running"
    assert not [raw for raw in sidecar.raw if "Traceback" in raw]


def test_admin_port_wrong_token_is_401_counted_and_changes_nothing(start_sidecar: StartSidecar) -> None:
    sidecar = start_sidecar(env={"SIDECAR_ADMIN_TOKEN": "right-token"})
    assert sidecar.metric("sidecar_admin_unauthorized_total", {"path": "/prestop"}) == 0
    assert sidecar.metric("sidecar_admin_unauthorized_total", {"path": "/drain"}) == 0
    assert_answers(sidecar.port, "POST", "/prestop", 401, headers={"Authorization": "Bearer wrong"})
    assert_answers(sidecar.port, "POST", "/prestop", 401)
    assert_answers(sidecar.port, "POST", "/drain", 401, body=b'{"inflight": 3}')
    assert sidecar.metric("sidecar_admin_unauthorized_total", {"path": "/prestop"}) == 2
    assert sidecar.metric("sidecar_admin_unauthorized_total", {"path": "/drain"}) == 1
    assert sidecar.get("/status").json()["phase"] == "running"
    assert sidecar.metric("sidecar_app_inflight") == 0
    sidecar.send_signal(signal.SIGTERM)
