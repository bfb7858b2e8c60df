"""SidecarWSGIMiddleware in this process, against a stand-in sidecar: what it counts and reports,
and that a slow sidecar delays no request."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Iterator
from typing import Any

from sidecar.integrations.events import ShutdownState
from sidecar.integrations.wsgi import ENVIRON_KEY, SidecarWSGIMiddleware, StartResponse
from tests.e2e.sidecar_process import wait_until
from tests.integrations.drain_recorder import DrainRecorder


def streamed(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])

    def chunks() -> Iterator[bytes]:
        yield b"one"
        yield b"two"

    return chunks()


def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None, /) -> Any:
    return lambda data: None


def test_wsgi_middleware_counts_a_streamed_body_in_flight_until_the_server_closes_it() -> None:
    with DrainRecorder() as sidecar:
        state = ShutdownState()
        middleware = SidecarWSGIMiddleware(streamed, sidecar_url=sidecar.url, token="", state=state)
        environ: dict[str, Any] = {}
        body = middleware(environ, start_response)
        assert environ[ENVIRON_KEY] is state
        assert b"".join(body) == b"onetwo"
        assert middleware.inflight == 1  # iterated, not yet closed
        body.close()  # type: ignore[attr-defined]
        body.close()  # type: ignore[attr-defined]  # a second close counts nothing
        assert middleware.inflight == 0
        middleware.finish()
    assert sidecar.reports[-1] == {
        "path": "/drain",
        "worker": os.getpid(),
        "pid_namespace": sidecar.reports[-1]["pid_namespace"],
        "inflight": 0,
        "event": "exit",  # no pod shutdown began: a worker leaving on its own
        "requests_started": 1,
    }


def test_wsgi_middleware_a_slow_sidecar_delays_no_request() -> None:
    hold = threading.Event()
    with DrainRecorder(hold=hold) as sidecar:
        middleware = SidecarWSGIMiddleware(streamed, sidecar_url=sidecar.url, token="", state=ShutdownState())
        for _ in range(1000):  # each returns at once though every report hangs
            body = middleware({}, start_response)
            body.close()  # type: ignore[attr-defined]
        assert middleware.inflight == 0
        hold.set()
        wait_until(lambda: sidecar.reports and sidecar.reports[-1].get("inflight") == 0, 10, what="the last count")


def test_wsgi_middleware_counts_requests_started_but_not_the_kubelets_probes() -> None:
    with DrainRecorder() as sidecar:
        middleware = SidecarWSGIMiddleware(streamed, sidecar_url=sidecar.url, token="", state=ShutdownState())
        for agent in ("curl/8.5.0", "kube-probe/1.31", None, "kube-probe/1.29"):
            environ: dict[str, Any] = {} if agent is None else {"HTTP_USER_AGENT": agent}
            body = middleware(environ, start_response)
            b"".join(body)
            body.close()  # type: ignore[attr-defined]
        assert middleware.reporter.flush(10)
    assert sidecar.reports[-1]["requests_started"] == 2  # four requests, two of them probes
    assert sidecar.reports[-1]["inflight"] == 0
