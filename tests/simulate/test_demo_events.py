"""The demo app's follower of GET /events, against a stand-in event stream in the sidecar's wire
format: shutdown started at the first phase other than running, the stream followed to `done`,
and a lost, refused or unreachable stream retried with one warning, never an error."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from sidecar.simulate.demo_events import ShutdownEvents, address_of, body_lines, phases
from tests.simulate.event_stream_server import EventStreamServer, event_stream
from tests.simulate.loopback_server import LoopbackServer, closed_port, serving
from tests.simulate.waiting import wait_until

WAIT_SECONDS = 5.0


class Logged:
    def __init__(self) -> None:
        self.lines: list[tuple[str, dict[str, object]]] = []

    def __call__(self, message: str, **fields: object) -> None:
        self.lines.append((message, fields))

    @property
    def warnings(self) -> list[str]:
        return [message for message, fields in self.lines if fields.get("level") == "warning"]


async def lines_of(*lines: str) -> AsyncIterator[str]:
    for line in lines:
        yield line


async def collected(lines: AsyncIterator[str]) -> list[str]:
    return [phase async for phase in phases(lines)]


@pytest.mark.anyio
async def test_phases_reads_event_names_and_skips_comments_and_ids() -> None:
    got = await collected(
        lines_of(": keep-alive", "", "id: 1", "event: running", 'data: {"phase": "running"}', "", "event: drain", "")
    )
    assert got == ["running", "drain"]


@pytest.mark.anyio
async def test_phases_falls_back_to_the_datas_phase_and_ignores_events_without_one() -> None:
    got = await collected(lines_of('data: {"phase": "prestop_delay"}', "", "data: not json", "", 'data: ["x"]', ""))
    assert got == ["prestop_delay"]


@pytest.mark.anyio
async def test_body_lines_dechunks_lines_split_across_chunks() -> None:
    reader = asyncio.StreamReader()
    reader.feed_data(b"5\r\nevent\r\n8\r\n: drain\n\r\n2\r\n\nx\r\n0\r\n\r\n")
    reader.feed_eof()
    assert [line async for line in body_lines(reader, chunked=True)] == ["event: drain", ""]


@pytest.mark.parametrize(
    ("url", "address"),
    [
        pytest.param("http://127.0.0.1:9180", ("127.0.0.1", 9180, "/events"), id="default"),
        pytest.param("http://localhost:8000/sidecar/", ("localhost", 8000, "/sidecar/events"), id="prefix"),
        pytest.param("http://sidecar", ("sidecar", 80, "/events"), id="no-port"),
    ],
)
def test_address_of_the_sidecar_url(url: str, address: tuple[str, int, str]) -> None:
    assert address_of(url) == address


@pytest.mark.parametrize("url", ["https://127.0.0.1:9180", "127.0.0.1:9180", "http://"])
def test_address_of_refuses_what_is_not_plain_http(url: str) -> None:
    with pytest.raises(ValueError, match="not an http:// URL"):
        address_of(url)


@pytest.mark.anyio
async def test_follow_sets_started_at_the_first_phase_after_running_and_ends_at_done() -> None:
    async with event_stream(EventStreamServer()) as server:
        logged = Logged()
        events = ShutdownEvents(server.url, logged)
        following = asyncio.create_task(events.follow())
        server.push("running")
        await wait_until(lambda: server.streams == 1, WAIT_SECONDS)
        assert not events.started.is_set()
        server.push("prestop_delay")
        await asyncio.wait_for(events.started.wait(), WAIT_SECONDS)
        server.push("drain")
        server.push("report")
        server.push("done")
        await asyncio.wait_for(following, WAIT_SECONDS)
    assert server.paths == ["/events"]
    assert logged.warnings == []
    assert ("shutdown started: answering connection: close", {"phase": "prestop_delay"}) in logged.lines


@pytest.mark.anyio
async def test_follow_backs_off_after_a_429_and_follows_the_next_stream() -> None:
    async with event_stream(EventStreamServer(refuse=1)) as server:
        logged = Logged()
        events = ShutdownEvents(server.url, logged)
        following = asyncio.create_task(events.follow())
        server.push("drain")  # t0 had passed before the app connected: the first event says so
        await asyncio.wait_for(events.started.wait(), WAIT_SECONDS)
        server.push("done")
        await asyncio.wait_for(following, WAIT_SECONDS)
    assert (server.attempts, server.streams) == (2, 1)
    assert len(logged.warnings) == 1


@pytest.mark.anyio
async def test_follow_reconnects_to_a_stream_that_ended_before_done() -> None:
    async with event_stream(EventStreamServer()) as server:
        events = ShutdownEvents(server.url, Logged())
        following = asyncio.create_task(events.follow())
        server.push("running")
        server.push(None)  # the sidecar went away without done (restarted, say)
        await wait_until(lambda: server.streams == 2, WAIT_SECONDS)
        server.push("prestop_delay")
        await asyncio.wait_for(events.started.wait(), WAIT_SECONDS)
        server.push("done")
        await asyncio.wait_for(following, WAIT_SECONDS)


@pytest.mark.anyio
async def test_follow_of_a_sidecar_that_keeps_failing_retries_and_warns_once() -> None:
    accepted = 0

    async def count_and_close(
        server: LoopbackServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        nonlocal accepted
        accepted += 1  # then closed without an answer

    async with serving(count_and_close) as server:
        logged = Logged()
        events = ShutdownEvents(f"http://127.0.0.1:{server.port}", logged)
        following = asyncio.create_task(events.follow())
        await wait_until(lambda: accepted >= 3, WAIT_SECONDS)
        following.cancel()
        await asyncio.gather(following, return_exceptions=True)
    assert len(logged.warnings) == 1
    assert not events.started.is_set()


@pytest.mark.anyio
async def test_follow_of_a_refusing_sidecar_warns_once_and_never_raises() -> None:
    logged = Logged()
    events = ShutdownEvents(f"http://127.0.0.1:{closed_port()}", logged)
    following = asyncio.create_task(events.follow())
    await wait_until(lambda: logged.warnings, WAIT_SECONDS)
    assert not following.done()  # still retrying in the background
    following.cancel()
    await asyncio.gather(following, return_exceptions=True)
    assert len(logged.warnings) == 1
    assert "ConnectionRefusedError" in str(logged.lines[0][1]["error"])


@pytest.mark.anyio
async def test_follow_logs_the_sidecar_url_without_its_credentials() -> None:
    logged = Logged()
    port = closed_port()
    events = ShutdownEvents(f"http://admin:s3cret@127.0.0.1:{port}", logged)
    following = asyncio.create_task(events.follow())
    await wait_until(lambda: logged.warnings, WAIT_SECONDS)
    following.cancel()
    await asyncio.gather(following, return_exceptions=True)
    assert logged.lines[0][1]["url"] == f"http://***@127.0.0.1:{port}"
    assert "s3cret" not in str(logged.lines)
    with pytest.raises(ValueError, match=r"\*\*\*@") as refused:
        address_of("https://admin:s3cret@127.0.0.1:9180")
    assert "s3cret" not in str(refused.value)
