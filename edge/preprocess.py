"""The one preprocessing implementation for a face crop: the face-tensor half of the edge contract.

Training, calibration, evaluation and the edge runtime all call these functions, so the tensor a
model sees at serving time is the tensor it saw in training. Turning files and bytes into pixels is
``edge/decode.py``'s job. ``normalize`` is written with plain
arithmetic and broadcasting only, which makes it run unchanged on numpy arrays and on TensorFlow
tensors (the training pipeline applies it after augmentation).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import cv2
import numpy as np

from feredge.edge.photometric import apply_photometric, is_stacked, photometric_views

ArrayLike = TypeVar("ArrayLike")  # a numpy array or a TensorFlow tensor: normalize serves both

# name -> (scale, offset) per channel: y = x * scale + offset, with x in [0, 255].
_CAFFE_MEAN = (103.939, 116.779, 123.68)
NORMALIZATIONS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "raw": ((1.0,), (0.0,)),
    "unit": ((1 / 255.0,), (0.0,)),
    "symmetric": ((1 / 127.5,), (-1.0,)),
    "imagenet": (
        tuple(1 / (255.0 * s) for s in (0.229, 0.224, 0.225)),
        tuple(-m / s for m, s in zip((0.485, 0.456, 0.406), (0.229, 0.224, 0.225), strict=True)),
    ),
    "caffe": ((1.0, 1.0, 1.0), tuple(-m for m in _CAFFE_MEAN)),
}


@dataclass(frozen=True)
class PreprocessSpec:
    """What a model expects as input: square size, channels, normalization and photometric names."""

    input_size: int = 48
    channels: int = 1
    normalization: str = "unit"
    photometric: str = "none"

    def __post_init__(self) -> None:
        if self.input_size < 8:
            raise ValueError(f"input_size must be >= 8, got {self.input_size}")
        if self.normalization not in NORMALIZATIONS:
            raise ValueError(f"unknown normalization {self.normalization!r}; choose from {', '.join(NORMALIZATIONS)}")
        views = len(photometric_views(self.photometric))
        if views > 1 and self.channels != views:
            raise ValueError(f"photometric {self.photometric!r} stacks {views} views, so channels must be {views}")
        if views == 1 and self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {self.channels}")

    @property
    def stacked(self) -> bool:
        """True when the gray crop carries one channel per photometric view already."""
        return is_stacked(self.photometric)

    def scale_offset(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-channel affine constants, repeated or cut to ``channels`` entries.

        Stacked views are each one gray channel, so each takes the gray (first) constants.
        """
        scale, offset = NORMALIZATIONS[self.normalization]
        if self.stacked:
            return np.full(self.channels, scale[0], np.float32), np.full(self.channels, offset[0], np.float32)
        return (
            np.resize(np.asarray(scale, np.float32), self.channels),
            np.resize(np.asarray(offset, np.float32), self.channels),
        )


def to_gray(image: np.ndarray) -> np.ndarray:
    """uint8 gray (H, W) from a decoded gray or BGR image."""
    return image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)


def prepare_face(image: np.ndarray, input_size: int, photometric: str = "none") -> np.ndarray:
    """Gray + resize + photometric normalization: the cacheable, augmentation-free part (uint8, S x S[ x V]).

    Training caches these pixels and augments them; the runtime normalizes them directly. Both get
    them from here, so a photometric step can never be applied on one side only.
    """
    return apply_photometric(_gray_resized(image, input_size), photometric)


def _gray_resized(image: np.ndarray, input_size: int) -> np.ndarray:
    gray = to_gray(image)
    if gray.shape == (input_size, input_size):
        return np.ascontiguousarray(gray)
    shrinking = gray.shape[0] > input_size or gray.shape[1] > input_size
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(gray, (input_size, input_size), interpolation=interpolation)


def normalize(gray: ArrayLike, spec: PreprocessSpec) -> ArrayLike:
    """(..., S, S) gray in [0, 255] -> (..., S, S, C) model input; numpy or TensorFlow.

    Stacked photometric views arrive as (..., S, S, V) and keep their channel axis.
    """
    scale, offset = spec.scale_offset()
    tensor: Any = gray  # numpy and TensorFlow index and broadcast alike
    return (tensor if spec.stacked else tensor[..., None]) * scale + offset


def preprocess_face(image: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """A decoded face crop -> float32 (S, S, C) tensor exactly as the model was trained on."""
    gray = prepare_face(image, spec.input_size, spec.photometric).astype(np.float32)
    return np.asarray(normalize(gray, spec), dtype=np.float32)


def preprocess_faces(images: Sequence[np.ndarray], spec: PreprocessSpec) -> np.ndarray:
    """Decoded face crops -> float32 (N, S, S, C), bit for bit ``preprocess_face`` of each, in one step.

    Only the gray conversion and the resize run per face (OpenCV resizes one image at a time); the
    photometric step runs over the stack with one CLAHE object, and normalization once over the batch,
    so a frame of many faces pays numpy's per-call overhead once rather than per face.
    """
    size = spec.input_size
    if not images:
        return np.zeros((0, size, size, spec.channels), np.float32)
    gray = apply_photometric(np.stack([_gray_resized(image, size) for image in images]), spec.photometric)
    return np.asarray(normalize(gray.astype(np.float32), spec), dtype=np.float32)


def square_box(
    box: tuple[int, int, int, int], margin: float, image_shape: tuple[int, ...], offset: float = 0.0
) -> tuple[int, int, int, int]:
    """Grow (x, y, w, h) into a square with ``margin`` of its side on each edge, clipped to the image.

    A negative margin crops inside the box; ``offset`` moves the centre down by that share of the side.
    """
    x, y, w, h = box
    side = max(w, h) * (1.0 + 2.0 * margin)
    cx, cy = x + w / 2.0, y + h / 2.0 + offset * max(w, h)
    height, width = image_shape[:2]
    x0 = round(max(0.0, cx - side / 2.0))
    y0 = round(max(0.0, cy - side / 2.0))
    x1 = round(min(float(width), cx + side / 2.0))
    y1 = round(min(float(height), cy + side / 2.0))
    return x0, y0, max(1, x1 - x0), max(1, y1 - y0)


def crop_face(image: np.ndarray, box: tuple[int, int, int, int], margin: float, offset: float = 0.0) -> np.ndarray:
    """The square, margin-grown, border-clipped crop that preprocessing expects."""
    x, y, w, h = square_box(box, margin, image.shape, offset)
    return image[y : y + h, x : x + w]
