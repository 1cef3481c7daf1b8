"""A 10 s, 640x480, 25 frames/s test clip made from one real photo (no real video ships with feredge).

Two copies of the astronaut portrait (``demo/examples/astronaut.png``: NASA, public domain) cross the
frame: one left to right, growing as if it came closer; the other mirrored, right to left in front of
it, with the light falling to a third in its second half. The first is also gone for 0.4 s (as if
turned away) before they cross. Camera noise is added. It is synthetic motion over a real face, not
footage: it exercises detection, tracking through misses and a crossing, and reading speed.

    python benchmarks/results/video/make_clip.py /tmp/astronaut_clip.mp4
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

PHOTO = Path(__file__).resolve().parents[3] / "demo" / "examples" / "astronaut.png"
SIZE, FPS, SECONDS = (640, 480), 25, 10
AWAY_S = (3.0, 3.4)  # the left-to-right copy is not drawn: a face the detector cannot see


def paste(frame: np.ndarray, image: np.ndarray, x: int, y: int) -> None:
    """``image`` onto ``frame`` with its top-left at (x, y), cut at the frame's edges."""
    h, w = image.shape[:2]
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, frame.shape[1]), min(y + h, frame.shape[0])
    if x1 > x0 and y1 > y0:
        frame[y0:y1, x0:x1] = image[y0 - y : y1 - y, x0 - x : x1 - x]


def main(out: str) -> int:
    photo = cv2.imread(str(PHOTO))
    portrait = photo[10:290, 120:360]  # head and shoulders, 240x280
    width, height = SIZE
    rng = np.random.default_rng(0)
    ramp = np.linspace(70, 140, width, dtype=np.float32)
    background = np.dstack([np.tile(ramp, (height, 1))] * 3).astype(np.uint8)
    writer = cv2.VideoWriter(out, cv2.VideoWriter_fourcc(*"mp4v"), FPS, SIZE)
    frames = FPS * SECONDS
    for i in range(frames):
        t = i / FPS
        frame = background.copy()
        share = i / (frames - 1)
        scale = 0.55 + 0.25 * share  # coming closer
        a = cv2.resize(portrait, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        if not AWAY_S[0] <= t < AWAY_S[1]:
            paste(frame, a, round(-40 + share * (width - 80)), round(40 + 15 * np.sin(2 * np.pi * t / 2.5)))
        b = cv2.resize(cv2.flip(portrait, 1), None, fx=0.6, fy=0.6, interpolation=cv2.INTER_AREA)
        light = 1.0 if t < SECONDS / 2 else 1.0 - (2 / 3) * (t - SECONDS / 2) / (SECONDS / 2)
        b = np.clip(b.astype(np.float32) * light, 0, 255).astype(np.uint8)
        paste(frame, b, round(width - 100 - share * (width - 60)), 70)
        noisy = frame.astype(np.float32) + rng.normal(0, 4, frame.shape)
        writer.write(np.clip(noisy, 0, 255).astype(np.uint8))
    writer.release()
    print(f"{out}: {frames} frames, {width}x{height}, {FPS} frames/s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "astronaut_clip.mp4"))
