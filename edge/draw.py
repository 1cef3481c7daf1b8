"""Boxes, labels and an FPS counter drawn onto images for ``--annotate``, ``--out`` and the demo."""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import replace

import cv2
import numpy as np

from feredge.edge.decode import ScaledImage
from feredge.edge.recognizer import Face

# BGR colours for the FER labels; any other label gets a stable colour from its name.
COLORS = {
    "angry": (40, 40, 220),
    "disgust": (40, 140, 60),
    "fear": (160, 60, 160),
    "happy": (40, 200, 240),
    "sad": (200, 120, 40),
    "surprise": (230, 190, 40),
    "neutral": (190, 190, 190),
}


def label_color(label: str) -> tuple[int, int, int]:
    if label in COLORS:
        return COLORS[label]
    hue = zlib.crc32(label.encode()) % 180
    b, g, r = cv2.cvtColor(np.array([[[hue, 200, 230]]], np.uint8), cv2.COLOR_HSV2BGR)[0, 0]
    return int(b), int(g), int(r)


def annotate(image: np.ndarray | ScaledImage, faces: Sequence[Face], fps: float | None = None) -> np.ndarray:
    """Draw each face's box and caption (``face_caption``) and an optional FPS counter.

    A BGR image is drawn on in place, which spares a full-size copy of a large photo; a gray image
    is converted to BGR first. For a ``ScaledImage`` (a photo decoded at reduced size) the faces'
    boxes, which are in original pixels, are mapped onto the reduced image. Returns the drawn image.
    """
    if isinstance(image, ScaledImage):
        if image.reduced:
            faces = [replace(face, box=image.to_image(face.box)) for face in faces]
        image = image.image
    canvas = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR) if image.ndim == 2 else image
    side = max(canvas.shape[:2])
    thickness = max(1, round(side / 400))
    font_scale = max(0.4, side / 1200)
    for number, face in enumerate(faces, 1):
        x, y, w, h = face.box
        color = label_color(face.label)
        cv2.rectangle(canvas, (x, y), (x + w, y + h), color, thickness)
        _text_box(canvas, face_caption(face, number), (x, y), color, font_scale, thickness)
    if fps is not None:
        _text_box(canvas, f"{fps:.1f} FPS", (0, 0), (30, 30, 30), font_scale, thickness)
    return canvas


def face_caption(face: Face, number: int) -> str:
    """``2: happy 87%`` for the face a photo's table lists as face 2 (faces come in reading order, and
    the table, the demo's charts and the picture number them alike); ``#7 happy 87%`` for a tracked
    face, whose track id names it from frame to frame where a position number would not."""
    text = f"{face.label} {face.confidence:.0%}"
    return f"#{face.track_id} {text}" if face.track_id is not None else f"{number}: {text}"


def _text_box(
    canvas: np.ndarray, text: str, corner: tuple[int, int], color: tuple[int, int, int], scale: float, thickness: int
) -> None:
    """Text on a filled box just above ``corner``, or just below it when there is no room above."""
    (tw, th), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    x, y = corner
    top = y - th - baseline - 4 if y - th - baseline - 4 >= 0 else y
    cv2.rectangle(canvas, (x, top), (x + tw + 4, top + th + baseline + 4), color, -1)
    ink = (0, 0, 0) if sum(color) > 380 else (255, 255, 255)
    cv2.putText(canvas, text, (x + 2, top + th + 2), cv2.FONT_HERSHEY_SIMPLEX, scale, ink, thickness, cv2.LINE_AA)
