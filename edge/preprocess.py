"""The one preprocessing implementation for a face crop.

Training, calibration, evaluation and the edge runtime all call these functions, so the tensor a
model sees at serving time is the tensor it saw in training. ``normalize`` is written with plain
arithmetic and broadcasting only, which makes it run unchanged on numpy arrays and on TensorFlow
tensors (the training pipeline applies it after augmentation).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from feredge.edge.errors import ImageError

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
    """What a model expects as input: square size, channel count and normalization name."""

    input_size: int = 48
    channels: int = 1
    normalization: str = "unit"

    def __post_init__(self) -> None:
        if self.input_size < 8:
            raise ValueError(f"input_size must be >= 8, got {self.input_size}")
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {self.channels}")
        if self.normalization not in NORMALIZATIONS:
            raise ValueError(
                f"unknown normalization {self.normalization!r}; choose from {', '.join(NORMALIZATIONS)}"
            )

    def scale_offset(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-channel affine constants, repeated or cut to ``channels`` entries."""
        scale, offset = NORMALIZATIONS[self.normalization]
        return (
            np.resize(np.asarray(scale, np.float32), self.channels),
            np.resize(np.asarray(offset, np.float32), self.channels),
        )


IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".pgm", ".ppm"})


def _looks_truncated(data: bytes) -> bool:
    """libjpeg and libpng decode truncated files with a grey fill and only a stderr warning."""
    if data[:3] == b"\xff\xd8\xff":
        return b"\xff\xd9" not in data[-1024:]
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return b"IEND" not in data[-64:]
    return False


def decode_image(source: str | Path | bytes | bytearray | np.ndarray, name: str | None = None) -> np.ndarray:
    """Decode a path, encoded bytes or an array into uint8 gray (H, W) or BGR (H, W, 3).

    16-bit images are scaled to 8 bits and alpha is dropped, so every later stage sees one of two
    layouts. Failures raise ``ImageError`` naming the input and the problem.
    """
    if isinstance(source, np.ndarray):
        return _normalize_array(source, name or "array")
    if isinstance(source, bytes | bytearray):
        label = name or "<bytes>"
        data = bytes(source)
    else:
        path = Path(source)
        label = name or str(path)
        if not path.exists():
            raise ImageError(f"{label}: file not found")
        if path.is_dir():
            raise ImageError(f"{label}: is a directory, not an image")
        data = path.read_bytes()
    if not data:
        raise ImageError(f"{label}: empty (0-byte) file")
    if _looks_truncated(data):
        raise ImageError(f"{label}: truncated image file")
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ImageError(f"{label}: not a readable image (unknown format or corrupt data)")
    return _normalize_array(image, label)


def _normalize_array(image: np.ndarray, label: str) -> np.ndarray:
    if image.size == 0:
        raise ImageError(f"{label}: image has no pixels")
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype in (np.float32, np.float64):
        peak = 1.0 if float(np.nanmax(image)) <= 1.0 else 255.0
        image = np.clip(np.nan_to_num(image) * (255.0 / peak), 0, 255).astype(np.uint8)
    elif image.dtype == np.bool_:
        image = image.astype(np.uint8) * 255
    elif image.dtype != np.uint8:
        raise ImageError(f"{label}: unsupported pixel type {image.dtype}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3):
        return np.ascontiguousarray(image)
    raise ImageError(f"{label}: unsupported image shape {image.shape}")


def to_gray(image: np.ndarray) -> np.ndarray:
    """uint8 gray (H, W) from a decoded gray or BGR image."""
    return image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)


def prepare_face(image: np.ndarray, input_size: int) -> np.ndarray:
    """Gray + resize: the cacheable, augmentation-free part of preprocessing (uint8, S x S)."""
    gray = to_gray(image)
    if gray.shape == (input_size, input_size):
        return np.ascontiguousarray(gray)
    shrinking = gray.shape[0] > input_size or gray.shape[1] > input_size
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(gray, (input_size, input_size), interpolation=interpolation)


def normalize(gray, spec: PreprocessSpec):
    """(..., S, S) gray in [0, 255] -> (..., S, S, C) model input; numpy or TensorFlow."""
    scale, offset = spec.scale_offset()
    return gray[..., None] * scale + offset


def preprocess_face(image: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """A decoded face crop -> float32 (S, S, C) tensor exactly as the model was trained on."""
    gray = prepare_face(image, spec.input_size).astype(np.float32)
    return np.asarray(normalize(gray, spec), dtype=np.float32)


def square_box(
    box: tuple[int, int, int, int], margin: float, image_shape: tuple[int, ...]
) -> tuple[int, int, int, int]:
    """Grow (x, y, w, h) into a square with ``margin`` of its side on each edge, clipped to the image."""
    x, y, w, h = box
    side = max(w, h) * (1.0 + 2.0 * margin)
    cx, cy = x + w / 2.0, y + h / 2.0
    height, width = image_shape[:2]
    x0 = round(max(0.0, cx - side / 2.0))
    y0 = round(max(0.0, cy - side / 2.0))
    x1 = round(min(float(width), cx + side / 2.0))
    y1 = round(min(float(height), cy + side / 2.0))
    return x0, y0, max(1, x1 - x0), max(1, y1 - y0)


def crop_face(image: np.ndarray, box: tuple[int, int, int, int], margin: float) -> np.ndarray:
    """The square, margin-grown, border-clipped crop that preprocessing expects."""
    x, y, w, h = square_box(box, margin, image.shape)
    return image[y : y + h, x : x + w]
