"""A real browser (headless chromium driven by Playwright) uploads an image and sees labels and charts."""

from __future__ import annotations

from pathlib import Path

import cv2
import pytest

from feredge.demo.screenshot import BrowserUnavailableError, capture, find_chromium
from feredge.edge.labels import FER2013


@pytest.mark.browser
def test_browser_upload_shows_label_chart_and_latency(demo_server, face_scene, tmp_path: Path) -> None:
    url, _ = demo_server
    image = tmp_path / "two_faces.png"
    cv2.imwrite(str(image), face_scene[0])
    shot = tmp_path / "demo.png"
    try:
        result = capture(url, image, shot, find_chromium(), timeout_s=60)
    except BrowserUnavailableError as exc:
        pytest.skip(f"no usable chromium: {exc}")
    assert result.status.startswith("2 faces:") and "latency: detect" in result.status
    title, heading, *bars = result.first_chart.splitlines()
    assert title.startswith(f"Face 1: {heading} ") and heading in FER2013
    assert set(bars[0::2]) == set(FER2013) and all(share.endswith("%") for share in bars[1::2])
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
