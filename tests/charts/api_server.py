"""A stand-in Kubernetes API server that serves Secrets to the chart's `lookup` (no cluster here).

It answers only what Helm's `lookup "v1" "Secret"` asks: the core group's resource list (discovery)
and GET of one namespaced Secret; anything else is a 404 Status, as the real server answers.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

CORE_RESOURCES = {
    "kind": "APIResourceList",
    "apiVersion": "v1",
    "groupVersion": "v1",
    "resources": [
        {"name": "secrets", "singularName": "secret", "namespaced": True, "kind": "Secret", "verbs": ["get", "list"]}
    ],
}


def secret_document(namespace: str, name: str, data: dict[str, str]) -> dict[str, Any]:
    encoded = {key: base64.b64encode(value.encode()).decode() for key, value in data.items()}
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": namespace}, "data": encoded}


def not_found(path: str) -> dict[str, Any]:
    status = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404}
    return {**status, "message": path}


@contextmanager
def serving_secrets(secrets: dict[tuple[str, str], dict[str, str]]) -> Iterator[str]:
    """Serve {(namespace, name): {key: value}} and yield a kubeconfig pointing at the server."""
    documents = {
        f"/api/v1/namespaces/{namespace}/secrets/{name}": secret_document(namespace, name, data)
        for (namespace, name), data in secrets.items()
    }
    documents["/api/v1"] = CORE_RESOURCES

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            document = documents.get(path, not_found(path))
            body = json.dumps(document).encode()
            self.send_response(int(document.get("code", 200)))
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield kubeconfig(f"http://127.0.0.1:{server.server_address[1]}")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def kubeconfig(server: str) -> str:
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "local", "cluster": {"server": server}}],
            "users": [{"name": "local", "user": {"token": "unused"}}],
            "contexts": [{"name": "local", "context": {"cluster": "local", "user": "local"}}],
            "current-context": "local",
        }
    )
