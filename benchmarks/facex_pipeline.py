"""The ``facex`` package's pipeline, reproduced from its source for a same-run comparison.

``facex.EmotionClassifier.predict`` (facex 1.1.0, ``facex/core.py`` and ``facex/utils.py``): OpenCV's
Haar cascade from facex's own ``assets/`` on the full-size gray image (``detectMultiScale(gray, 1.1, 4)``:
no minimum size, no flags); each box cut as ``gray[y:y+h, x:x+w]``; the crop through
``skimage.transform.resize(crop, (200, 200, 3))`` and fed to ``assets/model_optimized.tflite``, whose
seven outputs are anger, disgust, fear, happy, neutral, sadness, surprised. facex's import needs
TensorFlow and its resize needs scikit-image, so only its files are used (``peers.facex_dir``) and the
resize is reproduced here in numpy (``facex_input``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from feredge.benchmarks.fer_pipeline import PeerHaar
from feredge.benchmarks.models import CropFedModel
from feredge.benchmarks.peers import FACEX_MODEL, facex_dir
from feredge.edge.detectors import Box, Detection
from feredge.edge.metadata import ModelMetadata
from feredge.edge.model import load_model
from feredge.edge.preprocess import to_gray

NAME = "facex"
FACEX_SIZE = 200
# facex.core.EmotionClassifier's default ``category``, in its output order; load_model maps them to feredge's names.
FACEX_CATEGORIES = ("anger", "disgust", "fear", "happy", "neutral", "sadness", "surprised")
FACEX_SCALE_FACTOR = 1.1
FACEX_MIN_NEIGHBORS = 4
CASCADE_FILE = "haarcascade_frontalface_default.xml"
_TRUNCATE = 4.0  # scipy.ndimage.gaussian_filter's default kernel radius, in sigmas


def facex_input(crop: np.ndarray) -> np.ndarray:
    """``skimage.transform.resize(crop, (200, 200, 3))`` of a 2-D uint8 gray crop, as facex calls it.

    skimage (0.19 and later, defaults) turns uint8 into float64 in [0, 1] (``img_as_float``), treats the
    2-D crop as (h, w, 1), smooths each axis that shrinks with a Gaussian of sigma (factor - 1) / 2
    (``anti_aliasing``; ``scipy.ndimage.gaussian_filter``, mirror edges, 4 sigmas), then zooms with
    order-1 splines on pixel centres (``grid_mode``) and mirror edges, which copies the one gray
    channel into all three, and clips to the input's range. facex divides by 255 only when the
    maximum exceeds 1, which float input in [0, 1] never does. Smoothing and the bilinear zoom are
    separable, so they run one axis at a time.
    """
    gray = np.asarray(crop)
    if gray.ndim != 2 or gray.dtype != np.uint8 or min(gray.shape) < 1:
        raise ValueError(f"facex_input takes a non-empty 2-D uint8 gray crop, got {gray.dtype} {gray.shape}")
    image = gray.astype(np.float64) / 255.0
    out = image
    for _ in range(2):  # rows, then (transposed) columns
        out = np.ascontiguousarray(_zoom(_smooth(out)).T)
    out = np.clip(out, image.min(), image.max())
    return np.repeat(out[:, :, None], 3, axis=2).astype(np.float32)


def _mirror(index: np.ndarray, n: int) -> np.ndarray:
    """scipy.ndimage's 'mirror' boundary (numpy's 'reflect'): ``-1`` is ``1``, ``n`` is ``n - 2``."""
    if n == 1:
        return np.zeros_like(index)
    period = 2 * (n - 1)
    index = np.mod(index, period)
    return np.where(index >= n, period - index, index)


def _smooth(image: np.ndarray) -> np.ndarray:
    """skimage's anti-aliasing Gaussian along axis 0 when it shrinks to ``FACEX_SIZE`` (unchanged when it grows)."""
    n = len(image)
    sigma = max(0.0, (n / FACEX_SIZE - 1.0) / 2.0)
    if sigma <= 1e-15:  # scipy skips such axes
        return image
    radius = int(_TRUNCATE * sigma + 0.5)
    taps = np.arange(-radius, radius + 1)
    weights = np.exp(-0.5 / sigma**2 * taps.astype(np.float64) ** 2)
    weights /= weights.sum()
    return sum(w * image[_mirror(np.arange(n) + tap, n)] for tap, w in zip(taps, weights, strict=True))


def _zoom(image: np.ndarray) -> np.ndarray:
    """Order-1 ``scipy.ndimage.zoom`` to ``FACEX_SIZE`` along axis 0 with ``grid_mode=True``: output row k
    samples input coordinate ``(k + 0.5) * n / size - 0.5`` between its two neighbours, mirrored at the edges."""
    n = len(image)
    coords = (np.arange(FACEX_SIZE) + 0.5) * (n / FACEX_SIZE) - 0.5
    low = np.floor(coords).astype(np.int64)
    frac = (coords - low)[:, None]
    return image[_mirror(low, n)] * (1.0 - frac) + image[_mirror(low + 1, n)] * frac


class FacexModel(CropFedModel):
    """facex's TFLite model fed the way facex feeds it: any gray crop through ``facex_input``.

    Face data sets are loaded for it at FER2013's own 48 px (``crop_size``), so their faces reach the
    model through facex's resize, as a 48 px crop would in facex, not through feredge's."""

    def preprocess(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        if not crops:
            return np.zeros((0, FACEX_SIZE, FACEX_SIZE, 3), np.float32)
        return np.stack([facex_input(to_gray(crop)) for crop in crops])


def open_facex(path: str | Path, threads: int) -> FacexModel:
    """facex's TFLite file as a ``FacexModel`` (labels mapped to feredge's names, input in [0, 1])."""
    base = load_model(path, labels=FACEX_CATEGORIES, threads=threads, normalization="unit")
    metadata: ModelMetadata = base.metadata.replace(format="tflite-dynamic")
    return FacexModel(base.runner, metadata, "facex", threads)


def facex_crop(image: np.ndarray, box: Box) -> np.ndarray:
    """facex's crop: ``gray[y:y+h, x:x+w]`` (``facex.utils.crop_center``), no margin."""
    x, y, w, h = box
    return to_gray(image)[y : y + h, x : x + w]


def facex_face_crop(image: np.ndarray, face: Detection) -> np.ndarray:
    """``facex_crop`` for a detection: the cropper shape the photo runs take for every pipeline."""
    return facex_crop(image, face.box)


def facex_detector() -> PeerHaar:
    """facex's face finder on its own cascade file; ``PeerError`` when facex is missing."""
    return PeerHaar(facex_dir() / CASCADE_FILE, NAME, FACEX_SCALE_FACTOR, FACEX_MIN_NEIGHBORS, min_size=0, flags=0)


def facex_pipeline(threads: int) -> tuple[PeerHaar, FacexModel]:
    """facex's detector and its TFLite model (fed as facex feeds it); ``PeerError`` when facex is missing."""
    return facex_detector(), open_facex(facex_dir() / FACEX_MODEL, threads)
