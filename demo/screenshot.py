"""``python -m feredge.demo.screenshot OUT.png [--model PATH ...]``: the demo page with a result, as a PNG.

Starts the demo on a free loopback port, drives a headless chromium with Playwright (``pip install
playwright``; Debian's ``chromium`` package is the browser), uploads an image, waits for the first
face's chart and saves a full-page screenshot. The browser tests run this same flow, and the Video
tab's (``capture_video``).
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from feredge.cli.options import run_main
from feredge.demo import EXAMPLES_DIR
from feredge.edge.errors import FeredgeError

CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)


class BrowserUnavailableError(FeredgeError, RuntimeError):
    """No chromium was found, or it cannot be launched here."""


@dataclass(frozen=True)
class PageResult:
    """What the page showed once the result arrived."""

    status: str
    first_chart: str


def find_chromium() -> str:
    """Path of a chromium executable (``chromium`` or ``chromium-browser`` on PATH)."""
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    raise BrowserUnavailableError("no chromium on PATH (Debian/Ubuntu: apt-get install chromium)")


@contextlib.contextmanager
def open_page(url: str, chromium: str, timeout_s: float = 60.0) -> Iterator[Any]:
    """A Playwright page on ``url`` in a headless chromium, closed with the browser when the block ends.

    A browser that cannot start raises ``BrowserUnavailableError``.
    """
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        try:
            browser = playwright.chromium.launch(executable_path=chromium, headless=True, args=list(CHROMIUM_ARGS))
        except PlaywrightError as exc:
            reason = str(exc).strip().splitlines()[0]
            raise BrowserUnavailableError(f"cannot launch chromium ({chromium}): {reason}") from exc
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.set_default_timeout(timeout_s * 1000)
            page.goto(url, wait_until="domcontentloaded")
            yield page
        finally:
            browser.close()


def capture(url: str, image: Path, out: Path, chromium: str, timeout_s: float = 60.0) -> PageResult:
    """Open ``url``, upload ``image``, wait for the status and the first face chart, screenshot to ``out``.

    A page that never shows a result raises Playwright's ``TimeoutError``.
    """
    with open_page(url, chromium, timeout_s) as page:
        page.locator("#input-image input[type=file]").set_input_files(str(image))
        chart = page.locator("#face-1")
        chart.wait_for(state="visible")
        page.locator("#status", has_text="latency").wait_for()
        page.locator("#annotated img").wait_for()
        result = PageResult(page.locator("#status").inner_text(), chart.inner_text())
        out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(out), full_page=True)
    return result


def capture_video(url: str, clip: Path, out: Path, chromium: str, timeout_s: float = 120.0) -> str:
    """Open ``url``, upload ``clip`` in the Video tab and press "Analyze video", wait for the annotated
    video and the timeline plot, screenshot to ``out``; returns the tab's status text."""
    with open_page(url, chromium, timeout_s) as page:
        page.get_by_role("tab", name="Video").click()
        page.locator("#input-video input[type=file]").set_input_files(str(clip))
        page.locator("#input-video", has_text=clip.name).wait_for()  # uploaded: the button analyses it
        page.locator("#analyze-video").click()
        page.locator("#video-status", has_text="frames/s").wait_for()
        page.locator("#annotated-video video").wait_for()
        page.locator("#timeline-plot img").wait_for()
        status = page.locator("#video-status").inner_text()
        out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(out), full_page=True)
    return status


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m feredge.demo.screenshot", description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="PNG to write")
    parser.add_argument("--model", action="append", default=[], metavar="PATH", help="model(s) to serve")
    parser.add_argument("--image", type=Path, default=EXAMPLES_DIR / "astronaut.png", help="image to upload")
    parser.add_argument("--chromium", help="chromium executable (default: found on PATH)")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> PageResult:
    from feredge.demo.server import BackgroundServer, create_app
    from feredge.demo.service import DemoService, model_choices

    service = DemoService(model_choices(args.model))
    service.analyze(args.image.read_bytes(), name=args.image.name)  # warm up: the page shows a steady-state latency
    with BackgroundServer(create_app(service)) as server:
        return capture(server.url, args.image, args.out, args.chromium or find_chromium())


def main(argv: Sequence[str] | None = None) -> int:
    return run_main("screenshot", _print_result, parse_args(argv))


def _print_result(args: argparse.Namespace) -> int:
    result = run(args)
    print(f"{args.out}: {result.status.splitlines()[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
