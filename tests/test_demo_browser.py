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


@pytest.mark.browser
def test_browser_video_tab_shows_the_annotated_video_and_the_timeline(demo_server, face_drawer, tmp_path: Path) -> None:
    from test_timeline import SIDE, crossing_frames, write_avi

    from feredge.demo.screenshot import capture_video

    url, _ = demo_server
    clip = write_avi(tmp_path / "crossing.avi", crossing_frames(face_drawer(SIDE), frames=8))
    shot = tmp_path / "video.png"
    try:
        status = capture_video(url, clip, shot, find_chromium(), timeout_s=120)
    except BrowserUnavailableError as exc:
        pytest.skip(f"no usable chromium: {exc}")
    assert " faces tracked in 8 frames (" in status.splitlines()[0] and "track 1:" in status
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
