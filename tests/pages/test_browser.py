"""The pages in a real browser (Debian's headless Chromium): the default rehearsal's, a failing
`--mode none` rehearsal's, and real pods' from a `kubectl get pods -o json` fixture. Each loads
with no console error and no request but itself, shows the verdict and one lane per pod, fits a
phone's width, and screenshots as a picture (not blank) at 1280 and 390 px wide. Without
Chromium these skip, except under CI=true, where they fail."""

from __future__ import annotations

import asyncio
import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

import pytest

from tests.pages.browser import Loaded, chromium, chromium_path

pytestmark = pytest.mark.timeout(300)

FIXTURES = Path(__file__).parent / "fixtures"
WIDTHS = (1280, 390)
READ = {
    "verdict": "document.getElementById('verdict').textContent",
    "lanes": "[...document.querySelectorAll('.lane')].map(lane => lane.dataset.pod)",
    "titles": "document.querySelectorAll('svg title').length",
    "overflow": "document.documentElement.scrollWidth - window.innerWidth",
}


@pytest.fixture(autouse=True)
def browser_installed() -> None:
    if chromium_path() is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is not installed: .ci/run installs it with apt-get")
        pytest.skip("chromium is not installed (apt-get install chromium)")


def png_facts(data: bytes) -> tuple[int, int, int]:
    """Width, height and how many distinct byte values its pixel data holds (a blank page: ~2)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    pixels, at = b"", 8
    while at < len(data):
        (length,) = struct.unpack(">I", data[at : at + 4])
        if data[at + 4 : at + 8] == b"IDAT":
            pixels += data[at + 8 : at + 8 + length]
        at += 12 + length
    return width, height, len(set(zlib.decompress(pixels)))


def load_at_each_width(page: Path) -> dict[int, Loaded]:
    async def load_all() -> dict[int, Loaded]:
        async with chromium() as browser:
            return {width: await browser.load(page.as_uri(), width, READ) for width in WIDTHS}

    return asyncio.run(load_all())


def assert_page_shows(page: Path, verdict: str, pods: list[str]) -> None:
    for width, loaded in load_at_each_width(page).items():
        assert loaded.errors == [], width
        assert [url for url in loaded.requests if not url.startswith("data:")] == [page.as_uri()], width
        assert loaded.values["verdict"].split()[1].rstrip(":") == verdict, loaded.values["verdict"]
        assert loaded.values["lanes"] == pods, width
        assert loaded.values["titles"] >= len(pods), width
        assert loaded.values["overflow"] <= 0, f"the page is wider than {width} px"
        shot_width, shot_height, distinct = png_facts(loaded.screenshot)
        assert (shot_width, shot_height > 300, distinct > 20) == (width, True, True), (width, distinct)
        (page.parent / f"{page.stem}-{width}.png").write_bytes(loaded.screenshot)


def rehearse(tmp_path: Path, *args: str) -> tuple[Path, dict[str, Any]]:
    page = tmp_path / "rehearsal.html"
    done = subprocess.run(
        [sys.executable, "-m", "sidecar", "simulate", "--json", "--html", str(page), *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode in (0, 1), done.stderr
    return page, json.loads(done.stdout)


def test_page_of_the_default_rehearsal_passes_with_a_lane_per_pod(tmp_path: Path) -> None:
    page, result = rehearse(tmp_path)
    assert result["verdict"] == "pass"
    assert_page_shows(page, "PASS", [pod["name"] for pod in result["pods"]])


def test_page_of_a_rehearsal_without_the_sidecar_fails_and_names_where(tmp_path: Path) -> None:
    page, result = rehearse(tmp_path, "--mode", "none")
    assert result["verdict"] == "fail"
    assert_page_shows(page, "FAIL", [pod["name"] for pod in result["pods"]])
    text = page.read_text()
    assert any(f"{pod['name']} dropped" in text for pod in result["pods"])


def test_page_of_kubectl_pods_shows_each_reporting_pod(tmp_path: Path) -> None:
    page = tmp_path / "pods.html"
    done = subprocess.run(
        [sys.executable, "-m", "sidecar", "report", str(FIXTURES / "pods.json"), "--html", str(page)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1, done.stderr  # one pod timed out
    assert_page_shows(page, "FAIL", ["web-7d9c-a1", "web-7d9c-b2", "web-7d9c-c3"])
