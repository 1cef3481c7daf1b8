"""A group-photo proxy for detector recall, false boxes and speed, built from single-face photos.

There is no group photo with known face boxes here, so canvases are composed: photos of one face are
scaled (faces of 30 to 150 px, log-uniform), turned a little (up to 15 degrees) and pasted with a
soft-edged patch (the face with some hair and neck) at free positions of a 640x480 canvas, whose
background is a smooth random colour field with random shapes and noise.

Ground truth comes from the clean source photos: a source is used only when at least two detectors
find its face there with boxes that overlap (IoU >= 0.5), and its box is the mean of those boxes,
moved and scaled with the paste. So the proxy measures what scale, position, rotation, blur and
clutter do to each detector, on faces that the detectors themselves find easy: it is biased towards
frontal, unoccluded faces and says nothing about pose or hands over faces. ``self_iou`` reports how
well each detector's box matches the consensus on the clean sources, to show the IoU >= 0.3 criterion
measures finding faces, not box conventions.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from feredge.edge.detectors import detect_faces, iou
from feredge.edge.track import greedy_match

CANVAS = (480, 640)  # height, width
FACE_SIDES = (30.0, 150.0)
MAX_TURN = 15.0
CONSENSUS_IOU = 0.5
MATCH_IOU = 0.3
PATCH = 1.25  # the pasted patch's radius, in face sides
PER_FACES = 40  # false boxes are reported per this many faces


@dataclass(frozen=True)
class Source:
    """A photo of one face and its consensus box (x, y, w, h), in floats."""

    image: np.ndarray
    box: np.ndarray


def consensus_sources(images: Sequence[np.ndarray], detectors: dict[str, Any]) -> tuple[list[Source], dict]:
    """Sources whose face at least two detectors agree on, and each detector's IoU with the consensus."""
    sources, self_iou = [], {name: [] for name in detectors}
    for image in images:
        boxes = {}
        for name, detector in detectors.items():
            found = detect_faces(detector, image)
            if found:
                boxes[name] = np.array(found[0].box, np.float64)
        agreeing = [
            name
            for name in boxes
            if any(iou(boxes[name], boxes[other]) >= CONSENSUS_IOU for other in boxes if other != name)
        ]
        if len(agreeing) < 2:
            continue
        box = np.mean([boxes[name] for name in agreeing], axis=0)
        sources.append(Source(_bgr(image), box))
        for name in detectors:
            self_iou[name].append(float(iou(boxes[name], box)) if name in boxes else 0.0)
    return sources, {name: float(np.mean(v)) if v else 0.0 for name, v in self_iou.items()}


def _bgr(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR) if image.ndim == 2 else image


def background(rng: np.random.Generator) -> np.ndarray:
    """A cluttered 640x480 background: a smooth colour field, random shapes and sensor noise."""
    height, width = CANVAS
    field = cv2.resize(rng.integers(30, 225, (6, 8, 3), dtype=np.uint8), (width, height), interpolation=cv2.INTER_CUBIC)
    for _ in range(rng.integers(5, 15)):
        color = tuple(int(c) for c in rng.integers(0, 255, 3))
        center = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        if rng.random() < 0.5:
            axes = (int(rng.integers(10, 120)), int(rng.integers(10, 120)))
            cv2.ellipse(field, center, axes, float(rng.uniform(0, 180)), 0, 360, color, -1)
        else:
            size = rng.integers(10, 160, 2)
            cv2.rectangle(field, center, (center[0] + int(size[0]), center[1] + int(size[1])), color, -1)
    noisy = field.astype(np.float32) + rng.normal(0, 6, field.shape)
    return np.clip(noisy, 0, 255).astype(np.uint8)


def compose(sources: Sequence[Source], rng: np.random.Generator, max_faces: int = 8) -> tuple[np.ndarray, list]:
    """A canvas with up to ``max_faces`` pasted faces at free places, and their boxes (x, y, w, h)."""
    height, width = CANVAS
    canvas = background(rng).astype(np.float32)
    placed: list[tuple[float, float, float]] = []
    truth = []
    for _ in range(max_faces * 10):
        if len(truth) == max_faces:
            break
        source = sources[int(rng.integers(len(sources)))]
        side = float(np.exp(rng.uniform(*np.log(FACE_SIDES))))
        radius = PATCH * side
        cx, cy = rng.uniform(radius * 0.6, width - radius * 0.6), rng.uniform(radius * 0.6, height - radius * 0.6)
        if any(np.hypot(cx - x, cy - y) < radius + r for x, y, r in placed):
            continue
        placed.append((cx, cy, radius))
        truth.append(_paste(canvas, source, side, (cx, cy), float(rng.uniform(-MAX_TURN, MAX_TURN))))
    return canvas.astype(np.uint8), truth


def one_face_frame(source: Source, side: float, seed: int = 0) -> np.ndarray:
    """A 640x480 frame with ``source``'s face, ``side`` pixels wide, upright in the middle."""
    canvas = background(np.random.default_rng(seed)).astype(np.float32)
    _paste(canvas, source, side, (CANVAS[1] / 2.0, CANVAS[0] / 2.0), 0.0)
    return canvas.astype(np.uint8)


def _paste(canvas: np.ndarray, source: Source, side: float, at: tuple[float, float], angle: float) -> np.ndarray:
    x0, y0, w, h = source.box
    centre = (x0 + w / 2.0, y0 + h / 2.0)
    source_side = float(np.sqrt(w * h))
    scale = side / source_side
    matrix = cv2.getRotationMatrix2D(centre, angle, scale)
    matrix[:, 2] += np.array(at) - centre
    height, width = canvas.shape[:2]
    mask = np.zeros(source.image.shape[:2], np.float32)
    axes = (round(PATCH * 0.8 * source_side), round(PATCH * source_side))
    cv2.ellipse(mask, tuple(round(c) for c in centre), axes, 0, 0, 360, 1.0, -1)
    mask = cv2.GaussianBlur(mask, (0, 0), source_side * 0.08)
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    patch = cv2.warpAffine(source.image, matrix, (width, height), flags=interpolation).astype(np.float32)
    alpha = cv2.warpAffine(mask, matrix, (width, height), flags=cv2.INTER_LINEAR)[..., None]
    canvas *= 1.0 - alpha
    canvas += alpha * patch
    size = np.array([w, h]) * scale
    return np.array([at[0] - size[0] / 2.0, at[1] - size[1] / 2.0, size[0], size[1]])


def match(truth: Sequence[np.ndarray], found: Sequence[Sequence[float]]) -> tuple[list[bool], int]:
    """Greedy one-to-one matching at IoU >= 0.3: (was each true face found, number of false boxes)."""
    pairs = sorted(
        ((float(iou(t, f)), i, j) for i, t in enumerate(truth) for j, f in enumerate(found)), key=lambda p: -p[0]
    )
    found_of = greedy_match(pairs, lambda overlap: overlap >= MATCH_IOU)
    return [i in found_of for i in range(len(truth))], len(found) - len(found_of)


def detection_scores(
    detectors: dict[str, Any], canvases: Sequence[tuple[np.ndarray, list]], size_bins: Sequence[float] = (50, 80)
) -> list[dict[str, Any]]:
    """Recall (overall and by face side), false boxes per 40 faces and ms per canvas for each detector."""
    rows = []
    sides = np.array([np.sqrt(t[2] * t[3]) for _, truth in canvases for t in truth])
    bins = np.digitize(sides, size_bins)
    edges = [FACE_SIDES[0], *size_bins, FACE_SIDES[1]]
    for name, detector in detectors.items():
        hits, false, ms = [], 0, []
        for canvas, truth in canvases:
            start = time.perf_counter()
            found = detect_faces(detector, canvas)
            ms.append((time.perf_counter() - start) * 1000.0)
            hit, extra = match(truth, [face.box for face in found])
            hits += hit
            false += extra
        hits_arr = np.array(hits)
        rows.append(
            {
                "detector": name,
                "faces": len(hits),
                "recall": float(hits_arr.mean()),
                "recall_by_side": {
                    f"{edges[b]:.0f}-{edges[b + 1]:.0f}px": float(hits_arr[bins == b].mean())
                    for b in range(len(edges) - 1)
                    if (bins == b).any()
                },
                "false_boxes": false,
                "false_per_40": false * PER_FACES / len(hits),
                "ms_per_frame": float(np.median(ms)),
            }
        )
    return rows
