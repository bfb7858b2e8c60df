"""The README's pictures, made again: the default rehearsal's page, a `--mode none` rehearsal's
page and the page of the kubectl fixture, each written by the real commands and screenshot at
1280 px wide in Debian's headless Chromium (the driver the pages' tests use).

    .venv/bin/python docs/make_screenshots.py      # about 40 s; needs /usr/bin/chromium
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.pages.browser import chromium  # noqa: E402

WIDTH = 1280
PAGES = {
    "simulate.png": ["simulate"],
    "simulate-mode-none.png": ["simulate", "--mode", "none"],
    "report.png": ["report", str(ROOT / "tests" / "pages" / "fixtures" / "pods.json")],
}


def write_page(args: list[str], page: Path) -> None:
    done = subprocess.run(  # noqa: S603 - this interpreter and fixed arguments
        [sys.executable, "-m", "sidecar", *args, "--html", str(page)],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    if not page.exists():
        raise SystemExit(f"{' '.join(args)} wrote no page (exit {done.returncode}): {done.stderr.strip()}")


async def screenshot(pages: dict[str, Path]) -> None:
    async with chromium() as browser:
        print(f"screenshots by {browser.version}, {WIDTH} px wide")
        for name, page in pages.items():
            loaded = await browser.load(page.as_uri(), WIDTH, {})
            if loaded.errors:
                raise SystemExit(f"{name}: the page logged errors: {loaded.errors}")
            (ROOT / "docs" / name).write_bytes(loaded.screenshot)
            print(f"docs/{name}")


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="screenshots-") as directory:
        pages = {}
        for name, args in PAGES.items():
            pages[name] = Path(directory) / name.replace(".png", ".html")
            write_page(args, pages[name])
        asyncio.run(screenshot(pages))


if __name__ == "__main__":
    main()
