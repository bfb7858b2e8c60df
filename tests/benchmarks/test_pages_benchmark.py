"""How long a page of 5,000 pods takes: `report --html` on a `kubectl get pods -o json` list of
5,000 terminated pods (read, summarised, written), then Chromium's load of it. Printed, never
asserted (a loaded CI machine must not fail the build).

    pytest tests/benchmarks/test_pages_benchmark.py -m benchmark -s -p no:cacheprovider"""

from __future__ import annotations

import asyncio
import copy
import json
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.pages.browser import chromium, chromium_path

pytestmark = [pytest.mark.benchmark, pytest.mark.timeout(600)]

FIXTURES = Path(__file__).parents[1] / "pages" / "fixtures"
PODS = 5000


def many_pods(count: int, seed: int = 1) -> dict[str, Any]:
    """`count` pods like the fixture's first, their margins spread and one in fifty timed out."""
    listing = json.loads((FIXTURES / "pods.json").read_text())
    template = listing["items"][0]
    status = template["status"]["initContainerStatuses"][0]["state"]["terminated"]
    report = json.loads(status["message"])
    rng = random.Random(seed)
    items = []
    for index in range(count):
        pod = copy.deepcopy(template)
        pod["metadata"]["name"] = f"web-{index:05d}"
        margin = rng.gauss(6.0, 1.5)
        changed = {**report, "margin_seconds": margin, "drain_end": report["deadline"] - margin}
        if index % 50 == 0:
            changed.update(outcome="timeout", drain_end_source="deadline", margin_seconds=0.0, drain_end=None)
        pod["status"]["initContainerStatuses"][0]["state"]["terminated"]["message"] = json.dumps(changed)
        items.append(pod)
    return {"apiVersion": "v1", "kind": "List", "items": items}


def test_benchmark_page_of_5000_pods(tmp_path: Path) -> None:
    listing, page = tmp_path / "pods.json", tmp_path / "pods.html"
    listing.write_text(json.dumps(many_pods(PODS)))
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "sidecar", "report", str(listing), "--html", str(page)],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    written = time.perf_counter() - started
    assert done.returncode == 1, done.stderr
    print(
        f"\nreport --html, {PODS} pods ({listing.stat().st_size / 1e6:.1f} MB of JSON): {written:.2f} s, "
        f"page {page.stat().st_size / 1e6:.1f} MB"
    )
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "sidecar", "report", str(listing)], check=False, capture_output=True, timeout=300
    )
    print(f"report (lines), {PODS} pods: {time.perf_counter() - started:.2f} s")
    if chromium_path() is None:
        pytest.skip("chromium is not installed")

    async def load() -> None:
        async with chromium() as browser:
            for width in (1280, 390):
                loaded = await browser.load(
                    page.as_uri(), width, {"lanes": "document.querySelectorAll('.lane').length"}
                )
                print(
                    f"{browser.version}, {width} px: loaded in {loaded.load_seconds:.2f} s, "
                    f"{loaded.values['lanes']} lanes, errors {loaded.errors}"
                )
                (tmp_path / f"pods-{width}.png").write_bytes(loaded.screenshot)

    asyncio.run(load())
    print(f"screenshots in {tmp_path}")
