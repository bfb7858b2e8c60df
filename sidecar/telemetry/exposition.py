"""GET /metrics without request or response objects, and with one encoding (about 2 ms) shared by
every scrape that arrived before it was made: a flood of scrapes waiting their turn
(sidecar.admin.probes.RequestTurns) costs one encoding now and then, not one per scrape.
Content negotiation and the Prometheus text format are prometheus_client's (choose_encoder,
generate_latest), written here because prometheus_client.exposition also holds its HTTP servers and
Pushgateway client, whose imports cost every pod about 1.5 MB (tests/telemetry/test_exposition.py
compares the two); OpenMetrics is prometheus_client.openmetrics's own encoder."""

from __future__ import annotations

import asyncio
import functools
import re
import time
from collections.abc import Callable
from typing import Final

from prometheus_client.openmetrics import exposition as openmetrics
from prometheus_client.registry import Collector, CollectorRegistry
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString
from starlette.types import Receive, Scope, Send

from sidecar.admin.probes import ARRIVED_AT

Encoder = Callable[[Collector], bytes]

CONTENT_TYPE_TEXT_0_0_4: Final = "text/plain; version=0.0.4; charset=utf-8"
CONTENT_TYPE_TEXT_1_0_0: Final = "text/plain; version=1.0.0; charset=utf-8"
ESCAPINGS: Final = frozenset({openmetrics.ALLOWUTF8, openmetrics.UNDERSCORES, openmetrics.DOTS, openmetrics.VALUES})
UNDERSCORES: Final = openmetrics.UNDERSCORES
LEGACY_METRIC_NAME: Final = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
# Samples of OpenMetrics types the text format shows as gauges of their own, after the family.
OPENMETRICS_SUFFIXES: Final = ("_created", "_gsum", "_gcount")
TEXT_TYPES: Final = {"info": "gauge", "stateset": "gauge", "gaugehistogram": "histogram", "unknown": "untyped"}


def choose_encoder(accept: str) -> tuple[Encoder, str]:
    """The encoder and content type for an Accept header: OpenMetrics when asked for (version 1.0.0
    or later, or none given), the 1.0.0 text format with its escaping when asked for, else text 0.0.4."""
    for accepted in (accept or "").split(","):
        tokens = accepted.split(";")
        media_type = tokens[0].strip()
        if media_type not in ("application/openmetrics-text", "text/plain"):
            continue
        version, escaping = accept_parameter(tokens, "version"), accept_parameter(tokens, "escaping")
        escaping = escaping if escaping in ESCAPINGS else openmetrics.UNDERSCORES
        if media_type == "application/openmetrics-text":
            if not version:
                encode = functools.partial(openmetrics.generate_latest, escaping=UNDERSCORES, version="1.0.0")
                return encode, openmetrics.CONTENT_TYPE_LATEST
            if is_at_least_1_0_0(version):
                encode = functools.partial(openmetrics.generate_latest, escaping=escaping, version=version)
                return encode, f"application/openmetrics-text; version={version}; charset=utf-8; escaping={escaping}"
        elif is_at_least_1_0_0(version):
            return functools.partial(encode_text, escaping=escaping), f"{CONTENT_TYPE_TEXT_1_0_0}; escaping={escaping}"
    return encode_text, CONTENT_TYPE_TEXT_0_0_4


def accept_parameter(tokens: list[str], key: str) -> str:
    for token in tokens[1:]:
        name, equals, value = token.strip().partition("=")
        if equals and name == key:
            return value
    return ""


def is_at_least_1_0_0(version: str) -> bool:
    parts = version.split(".")
    if not version or not all(part.isdigit() for part in parts):
        return False  # prometheus_client compares such a version as a tuple of strings and raises
    return tuple(int(part) for part in parts) >= (1, 0, 0)


def encode_text(registry: Collector, escaping: str = openmetrics.UNDERSCORES) -> bytes:
    """The Prometheus text format of `registry`, as prometheus_client's generate_latest writes it."""
    output: list[str] = []
    for metric in registry.collect():
        name, kind = metric.name, metric.type
        if kind == "counter":
            name += "_total"
        elif kind == "info":
            name += "_info"
        kind = TEXT_TYPES.get(kind, kind)
        output.append(family_head(name, metric.documentation, kind, escaping))
        trailing: dict[str, list[str]] = {}
        for sample in metric.samples:
            suffix = next((end for end in OPENMETRICS_SUFFIXES if sample.name == metric.name + end), None)
            line = sample_line(sample, escaping)
            if suffix is None:
                output.append(line)
            else:
                trailing.setdefault(suffix, []).append(line)
        for suffix, lines in sorted(trailing.items()):
            output.append(family_head(metric.name + suffix, metric.documentation, "gauge", escaping))
            output.extend(lines)
    return "".join(output).encode("utf-8")


def family_head(name: str, documentation: str, kind: str, escaping: str) -> str:
    escaped = openmetrics.escape_metric_name(name, escaping)
    help_text = documentation.replace("\\", r"\\").replace("\n", r"\n")
    return f"# HELP {escaped} {help_text}\n# TYPE {escaped} {kind}\n"


def sample_line(sample: Sample, escaping: str) -> str:
    labels = ",".join(
        '{}="{}"'.format(
            openmetrics.escape_label_name(key, escaping),
            value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\""),
        )
        for key, value in sorted(sample.labels.items())
    )
    timestamp = "" if sample.timestamp is None else f" {int(float(sample.timestamp) * 1000):d}"
    name = openmetrics.escape_metric_name(sample.name, escaping)
    value = f"{floatToGoString(sample.value)}{timestamp}\n"  # type: ignore[no-untyped-call]
    if escaping != openmetrics.ALLOWUTF8 or LEGACY_METRIC_NAME.match(sample.name):
        return f"{name}{{{labels}}} {value}" if labels else f"{name} {value}"
    return f"{{{name},{labels}}} {value}" if labels else f"{{{name}}} {value}"


class SharedEncodings:
    """The registry's encodings by content type, each with the time it was made. A scrape may use
    an encoding made after it arrived: it shows every change made before the scrape's request was
    read. So one encoding serves every scrape waiting when it is made."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.made = 0  # encodings made, for tests
        self._encodings: dict[str, tuple[float, bytes]] = {}

    def encoding(self, accept: str, arrived_at: float) -> tuple[bytes, str]:
        """(body, content type) for a scrape that arrived at `arrived_at` (time.monotonic()),
        encoded anew only if the last encoding of that type was made before then."""
        encoder, content_type = choose_encoder(accept)
        made = self._encodings.get(content_type)
        if made is None or made[0] < arrived_at:
            made = (time.monotonic(), encoder(self.registry))
            self._encodings[content_type] = made
            self.made += 1
        return made[1], content_type


class MetricsEndpoint:
    """The ASGI endpoint for GET /metrics."""

    def __init__(self, registry: CollectorRegistry, on_scrape: Callable[[], None] = lambda: None) -> None:
        self.encodings = SharedEncodings(registry)
        self.on_scrape = on_scrape

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        arrived_at = scope.get(ARRIVED_AT) or time.monotonic()
        # Let every scrape that arrived in this turn begin first: one encoding then serves them.
        await asyncio.sleep(0)
        accept = next((value.decode("latin-1") for name, value in scope["headers"] if name == b"accept"), "")
        body, content_type = self.encodings.encoding(accept, arrived_at)
        headers = [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        self.on_scrape()
