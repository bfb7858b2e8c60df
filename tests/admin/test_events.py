from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

import pytest

from sidecar.admin import events as events_module
from sidecar.admin.events import KEEPALIVE, EventsEndpoint, EventStream, ShutdownEvents, format_event
from sidecar.deadline import Budget
from sidecar.lifecycle import DrainEndSource, Outcome, Phase, Timeline, Trigger

Message = dict[str, Any]


def events_for(timeline: Timeline, max_streams: int = 64) -> ShutdownEvents:
    def status() -> Mapping[str, Any]:
        return {"phase": timeline.phase.value, "t0": timeline.t0}

    events = ShutdownEvents(status, max_streams=max_streams)
    timeline.add_listener(events.on_phase_change)
    return events


def run_to_done(timeline: Timeline) -> None:
    timeline.begin(Trigger.PRESTOP, 100.0)
    timeline.advance(Phase.DRAIN, 105.0)
    timeline.end_drain(DrainEndSource.APP_REPORT, Outcome.CLEAN, 106.0)
    timeline.advance(Phase.DONE, 106.5)


async def read_all(stream: EventStream) -> list[bytes]:
    return [chunk async for chunk in stream.chunks()]


def parse(chunk: bytes) -> tuple[str, dict[str, Any]]:
    fields = dict(line.split(": ", 1) for line in chunk.decode().strip().split("\n"))
    return fields["event"], json.loads(fields["data"])


def test_events_format_names_the_phase_and_carries_the_document_on_one_line() -> None:
    chunk = format_event(7, {"phase": "drain", "t0": 1.5})
    assert chunk == b'id: 7\nevent: drain\ndata: {"phase":"drain","t0":1.5}\n\n'


@pytest.mark.anyio
async def test_events_stream_starts_with_the_current_status_and_ends_after_done() -> None:
    timeline = Timeline(Budget(30, 5, 1))
    events = events_for(timeline)
    stream = events.open()
    assert stream is not None
    run_to_done(timeline)
    chunks = await asyncio.wait_for(read_all(stream), 5)
    assert [parse(chunk)[0] for chunk in chunks] == ["running", "prestop_delay", "drain", "report", "done"]
    assert parse(chunks[1])[1]["t0"] == 100.0


@pytest.mark.anyio
async def test_events_stream_opened_after_done_gets_the_status_and_ends() -> None:
    timeline = Timeline(Budget(30, 5, 1))
    events = events_for(timeline)
    run_to_done(timeline)
    stream = events.open()
    assert stream is not None
    assert [parse(chunk)[0] for chunk in await asyncio.wait_for(read_all(stream), 5)] == ["done"]


def test_events_limit_refuses_a_stream_beyond_the_maximum_until_one_closes() -> None:
    events = events_for(Timeline(Budget(30, 5, 1)), max_streams=2)
    first, second = events.open(), events.open()
    assert first is not None
    assert second is not None
    assert events.open() is None
    first.close()
    assert events.open_streams == 1
    assert events.open() is not None


@pytest.mark.anyio
async def test_events_idle_stream_sends_keep_alive_comments(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(events_module, "KEEPALIVE_SECONDS", 0.01)
    events = events_for(Timeline(Budget(30, 5, 1)))
    stream = events.open()
    assert stream is not None
    chunks = stream.chunks()
    assert parse(await anext(chunks))[0] == "running"
    assert await asyncio.wait_for(anext(chunks), 5) == KEEPALIVE
    await chunks.aclose()


class FakeClient:
    """The ASGI side of one HTTP client: what the endpoint sent, and a disconnect on demand."""

    def __init__(self) -> None:
        self.sent: list[Message] = []
        self.gone = asyncio.Event()
        self.first_body = asyncio.Event()

    async def receive(self) -> Message:
        await self.gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        self.sent.append(message)
        if message["type"] == "http.response.body":
            self.first_body.set()


@pytest.mark.anyio
async def test_events_endpoint_answers_429_beyond_the_limit() -> None:
    events = events_for(Timeline(Budget(30, 5, 1)), max_streams=0)
    client = FakeClient()
    await EventsEndpoint(events)({"type": "http"}, client.receive, client.send)
    assert client.sent[0]["status"] == 429
    assert events.open_streams == 0


@pytest.mark.anyio
async def test_events_endpoint_frees_the_slot_when_the_client_goes() -> None:
    events = events_for(Timeline(Budget(30, 5, 1)))
    client = FakeClient()
    serving = asyncio.create_task(EventsEndpoint(events)({"type": "http"}, client.receive, client.send))
    await asyncio.wait_for(client.first_body.wait(), 5)
    assert events.open_streams == 1
    client.gone.set()
    await asyncio.wait_for(serving, 5)
    assert events.open_streams == 0
    assert client.sent[0]["status"] == 200
    assert dict(client.sent[0]["headers"])[b"content-type"].startswith(b"text/event-stream")


@pytest.mark.anyio
async def test_events_endpoint_ends_the_response_after_done() -> None:
    timeline = Timeline(Budget(30, 5, 1))
    events = events_for(timeline)
    client = FakeClient()
    serving = asyncio.create_task(EventsEndpoint(events)({"type": "http"}, client.receive, client.send))
    await asyncio.wait_for(client.first_body.wait(), 5)
    run_to_done(timeline)
    await asyncio.wait_for(serving, 5)
    assert client.sent[-1] == {"type": "http.response.body", "body": b""}
    assert events.open_streams == 0
