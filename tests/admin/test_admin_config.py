"""AdminConfig has every setting uvicorn's httptools protocol reads (the one part of uvicorn the
admin port uses); this fails when uvicorn reads another."""

from __future__ import annotations

import inspect
import re

from starlette.responses import PlainTextResponse
from uvicorn.protocols.http import httptools_impl

from sidecar.admin.server import build_config


def test_admin_config_has_every_setting_uvicorns_protocol_reads() -> None:
    """What the httptools protocol and its request cycle read, anywhere: each must be an
    AdminConfig attribute."""
    read = set(re.findall(r"\bconfig\.(\w+)", inspect.getsource(httptools_impl)))
    config = build_config(PlainTextResponse("ok"))
    assert read, "uvicorn no longer reads its config as config.<name>: this test must be rewritten"
    assert sorted(name for name in read if not hasattr(config, name)) == []


def test_admin_config_is_loaded_and_limits_no_concurrency() -> None:
    config = build_config(PlainTextResponse("ok"))
    config.load()
    assert config.loaded
    assert config.limit_concurrency is None
    assert config.ws_protocol_class is None
