"""Generated 640x480 frames with drawn faces: a pipeline benchmark that needs no photos or downloads.

The drawn face is the one the tests use (``tests/conftest.py``); Haar, YuNet, BlazeFace and fer's own
cascade all find it, so every frame yields as many detections as it has faces. ``frame_comparison``
times whole frames through each pipeline, full frame and detect-size variants beside fer's own.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from feredge.benchmarks.errors import PeerError
from feredge.benchmarks.latency import opencv_threads, summarize
from feredge.edge.detectors import DETECTOR_DEFAULT, Box, DetectSize
from feredge.edge.model import load_model
from feredge.edge.options import RecognizerOptions
from feredge.edge.recognizer import EmotionRecognizer

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


# The pipelines ``frame_comparison`` sets side by side: (name, detector, detect size); "default" is the
# detector's own measured default (``DetectorEntry.detect_size``), None full resolution.
FRAME_VARIANTS: tuple[tuple[str, str, DetectSize], ...] = (
    ("yunet full frame", "yunet", None),
    ("yunet default", "yunet", DETECTOR_DEFAULT),
    ("yunet 320", "yunet", 320),
    ("blazeface default", "blazeface", DETECTOR_DEFAULT),
    ("haar default", "haar", DETECTOR_DEFAULT),
)


def frame_comparison(
    model_path: str | None, threads: int, frames: int, warmup: int = 3, peer_fer: bool = True
) -> dict[str, Any]:
    """Whole-frame rates on the one-face 640x480 scene: feredge's pipelines (``FRAME_VARIANTS``, through
    ``EmotionRecognizer``) and, when installed, ``fer``'s own pipeline (its Haar, crop and model), in one run.

    Each row: faces found, detect size used, p50 and mean ms per frame, frames/s (from the p50) and its
    ratio to fer's. fer not installed is a ``fer_skipped`` reason, not a failure."""
    frame, _ = scene(1)
    rows = []
    with opencv_threads(threads):
        model = load_model(model_path, threads=threads)
        for name, detector, size in FRAME_VARIANTS:
            recognizer = EmotionRecognizer.create_from_options(RecognizerOptions(model, detector, detect_size=size))
            times = _timed(lambda r=recognizer: len(r.predict(frame)), frames, warmup)
            used = recognizer.detector.detect_size
            rows.append({"pipeline": name, "detector": detector, "detect_size": used, **times})
        skipped = None
        if peer_fer:
            try:
                rows.append({"pipeline": "fer (its own pipeline)", **_fer_rates(frame, threads, frames, warmup)})
            except PeerError as exc:
                skipped = str(exc)
    fer_fps = next((row["fps"] for row in rows if row["detector"] == "fer"), None)
    for row in rows:
        row["x_fer"] = row["fps"] / fer_fps if fer_fps else None
    return {
        "frame": f"{FRAME_SHAPE[1]}x{FRAME_SHAPE[0]}, 1 face",
        "model": Path(model.name).name,
        "threads": threads,
        "rows": rows,
        "fer_skipped": skipped,
    }


def _fer_rates(frame: np.ndarray, threads: int, frames: int, warmup: int) -> dict[str, Any]:
    from feredge.benchmarks.fer_pipeline import fer_crop, fer_pipeline

    detector, model = fer_pipeline(threads)

    def once() -> int:
        boxes = detector.detect(frame)
        if boxes:
            model.predict_crops([fer_crop(frame, box) for box in boxes])
        return len(boxes)

    return {"detector": "fer", "detect_size": None, **_timed(once, frames, warmup)}


def _timed(call: Callable[[], int], frames: int, warmup: int) -> dict[str, Any]:
    for _ in range(warmup):
        call()
    times, found = [], []
    for _ in range(frames):
        start = time.perf_counter()
        found.append(call())
        times.append((time.perf_counter() - start) * 1000.0)
    ms = summarize(times)
    return {"faces": min(found), "ms": ms, "fps": 1000.0 / ms["p50"]}


def frames_markdown(comparison: dict[str, Any]) -> list[str]:
    """The comparison as a markdown table, fastest first."""
    lines = [
        f"Whole frame ({comparison['frame']}; model {comparison['model']}; {comparison['threads']} thread(s)):",
        "",
        "| pipeline | detect size | faces | ms p50 | ms mean | frames/s | x fer |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in sorted(comparison["rows"], key=lambda r: -r["fps"]):
        size = "full" if row["detect_size"] is None else row["detect_size"]
        ratio = "-" if row["x_fer"] is None else f"{row['x_fer']:.1f}x"
        lines.append(
            f"| {row['pipeline']} | {size} | {row['faces']} | {row['ms']['p50']:.1f} | {row['ms']['mean']:.1f} | "
            f"{row['fps']:.0f} | {ratio} |"
        )
    if comparison["fer_skipped"]:
        lines += ["", f"fer skipped: {comparison['fer_skipped']}"]
    return lines
