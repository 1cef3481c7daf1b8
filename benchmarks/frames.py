"""Generated 640x480 frames with drawn faces: a pipeline benchmark that needs no photos or downloads.

The drawn face is the one the tests use (``tests/conftest.py``); both the Haar cascade and YuNet find
it, so every frame yields as many detections as it has faces.
"""

from __future__ import annotations

import cv2
import numpy as np

from feredge.edge.detectors import Box

FRAME_SHAPE = (480, 640)


def draw_face(size: int = 200, background: int = 40) -> np.ndarray:
    """A drawn, slightly blurred frontal face (BGR uint8, size x size)."""
    img = np.full((size, size, 3), background, np.uint8)
    c, s = size // 2, size / 200

    def p(v: float) -> int:
        return round(v * s)

    cv2.ellipse(img, (c, c), (p(70), p(90)), 0, 0, 360, (170, 190, 220), -1)
    for dx in (-30, 30):
        cv2.ellipse(img, (c + p(dx), c - p(20)), (p(14), p(7)), 0, 0, 360, (255, 255, 255), -1)
        cv2.circle(img, (c + p(dx), c - p(20)), p(6), (30, 30, 30), -1)
        cv2.line(img, (c + p(dx) - p(16), c - p(40)), (c + p(dx) + p(16), c - p(40)), (40, 40, 60), p(5))
    cv2.line(img, (c, c - p(10)), (c, c + p(20)), (120, 140, 170), p(4))
    cv2.ellipse(img, (c, c + p(45)), (p(28), p(12)), 0, 0, 180, (60, 60, 150), p(5))
    return cv2.GaussianBlur(img, (0, 0), 3 * s)


def scene(faces: int) -> tuple[np.ndarray, list[Box]]:
    """A 640x480 BGR frame with ``faces`` (1 to 4) drawn faces on a 2x2 grid, and their boxes."""
    if not 1 <= faces <= 4:
        raise ValueError(f"a scene holds 1 to 4 faces, got {faces}")
    height, width = FRAME_SHAPE
    frame = np.full((height, width, 3), 90, np.uint8)
    if faces == 1:
        slots, side = [(width // 2, height // 2)], 240
    else:
        slots, side = [(160, 120), (480, 120), (160, 360), (480, 360)][:faces], 200
    boxes = []
    for cx, cy in slots:
        x, y = cx - side // 2, cy - side // 2
        frame[y : y + side, x : x + side] = draw_face(side)
        boxes.append((x, y, side, side))
    return frame, boxes
