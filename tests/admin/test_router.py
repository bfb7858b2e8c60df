"""The admin endpoints' router: answers as Starlette's did, through httpx's ASGI transport."""

from __future__ import annotations

import httpx
import pytest

from sidecar.admin.router import ClientDisconnect, Request, Response, Route, Router, json_response, text_response


async def echo(request: Request) -> Response:
    body = b"".join([chunk async for chunk in request.stream()])
    return json_response(
        {
            "method": request.method,
            "path": request.path,
            "token": request.header(b"authorization"),
            "body": body.decode(),
        }
    )


async def hello(request: Request) -> Response:
    return text_response("hello", 201, {"X-Extra": "1"})


def client() -> httpx.AsyncClient:
    routes = [
        Route("/echo", frozenset({"GET", "POST"}), handler=echo),
        Route("/hello", frozenset({"PUT"}), handler=hello),
    ]
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=Router(routes)), base_url="http://sidecar")


@pytest.mark.anyio
async def test_router_dispatches_on_the_exact_path_and_the_method() -> None:
    async with client() as http:
        response = await http.post("/echo", content="é", headers={"Authorization": "Bearer x"})
        assert response.json() == {"method": "POST", "path": "/echo", "token": "Bearer x", "body": "é"}
        assert response.headers["content-type"] == "application/json"
        assert response.content == b'{"method":"POST","path":"/echo","token":"Bearer x","body":"\xc3\xa9"}'
        hello_response = await http.put("/hello")
        assert (hello_response.status_code, hello_response.text) == (201, "hello")
        assert hello_response.headers["x-extra"] == "1"
        assert hello_response.headers["content-type"] == "text/plain; charset=utf-8"


@pytest.mark.anyio
async def test_router_not_found_method_not_allowed_and_head_where_get_is() -> None:
    async with client() as http:
        missing = await http.get("/echo/")
        assert (missing.status_code, missing.text, "location" in missing.headers) == (404, "Not Found", False)
        refused = await http.delete("/echo")
        assert (refused.status_code, refused.text) == (405, "Method Not Allowed")
        assert refused.headers["allow"] == "GET, HEAD, POST"
        assert (await http.head("/echo")).status_code == 200
        assert (await http.head("/hello")).status_code == 405


@pytest.mark.anyio
async def test_router_request_stream_raises_client_disconnect_when_the_client_goes_first() -> None:
    messages = iter([{"type": "http.request", "body": b"ab", "more_body": True}, {"type": "http.disconnect"}])

    async def receive() -> dict[str, object]:
        return next(messages)

    scope = {"type": "http", "method": "POST", "path": "/echo", "headers": [], "query_string": b""}
    request = Request(scope, receive)  # type: ignore[arg-type]
    chunks: list[bytes] = []

    async def read_all() -> None:
        async for chunk in request.stream():
            chunks.append(chunk)

    with pytest.raises(ClientDisconnect):
        await read_all()
    assert chunks == [b"ab"]
