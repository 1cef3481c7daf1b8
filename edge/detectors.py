"""The face detectors, one registry: a decoded image in, (x, y, w, h) boxes in its own pixels out.

Each detector is registered once with ``@register_detector`` (the way ``train/backbones.py``
registers backbones, after timm's ``register_model``): its name, its builder, what it needs and a
description. CLI choices, the demo's offer and the benchmark's pipeline all read ``DETECTORS``, and
``make_detector`` builds any row, so a new detector is one decorated function in this module.

- ``haar``: OpenCV's bundled frontal-face cascade; no download, works on any CPU (needs OpenCV < 5).
- ``yunet``: ``cv2.FaceDetectorYN``; more accurate and finds turned faces. Its ONNX file comes from
  ``--detector-model PATH`` or the cache ``~/.cache/feredge/`` (``$FEREDGE_CACHE``), which is filled
  on first use from the OpenCV model zoo and checked against a pinned sha256.
- ``none``: the input already is a face crop; the whole image is the one box.

Large frames are downscaled once for detection and the boxes mapped back, so a 10000 x 10000 photo
costs one small resized copy, not a gray or float copy at full size.
"""

from __future__ import annotations

import hashlib
import os
import threading
import urllib.request
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from feredge.edge.atomic import atomic_write_bytes
from feredge.edge.errors import ModelLoadError, OptionError
from feredge.edge.preprocess import to_gray

Box = tuple[int, int, int, int]
ModelPath = str | Path | None

DEFAULT_DETECTOR = "haar"
DEFAULT_MIN_FACE = 32
DEFAULT_MAX_SIDE = 640

YUNET_URL = (
    "https://github.com/opencv/opencv_zoo/raw/main/models/face_detection_yunet/face_detection_yunet_2023mar.onnx"
)
YUNET_SHA256 = "ebafce4e3c118d6554634be5c27ab333b4c047a9a8c3faf1d7cf93101c22f0f0"
YUNET_FILENAME = "face_detection_yunet_2023mar.onnx"


class Detector(Protocol):
    """Anything with ``detect(image) -> boxes``; boxes are ints in the image's pixels."""

    def detect(self, image: np.ndarray) -> list[Box]: ...


DetectorBuilder = Callable[[ModelPath, int, int], Detector]  # (model_path, min_face, max_side) -> detector


@dataclass(frozen=True)
class DetectorEntry:
    """One registered detector.

    ``model_file``: it runs a model file (``--detector-model``); ``landmarks``: it finds facial
    landmarks besides boxes; ``whole_image``: it finds no faces but passes the image on as one
    (no use for a pipeline benchmark); ``ready(model_path)``: it can be built here without a
    download, which decides whether an offline demo offers it.
    """

    name: str
    build: DetectorBuilder
    description: str
    model_file: bool = False
    landmarks: bool = False
    whole_image: bool = False
    ready: Callable[[ModelPath], bool] = lambda model_path: True


DETECTORS: dict[str, DetectorEntry] = {}


def register_detector(
    name: str,
    description: str,
    *,
    model_file: bool = False,
    landmarks: bool = False,
    whole_image: bool = False,
    ready: Callable[[ModelPath], bool] | None = None,
) -> Callable[[DetectorBuilder], DetectorBuilder]:
    """Decorator: add ``build(model_path, min_face, max_side) -> Detector`` to ``DETECTORS`` as ``name``."""

    def wrap(build: DetectorBuilder) -> DetectorBuilder:
        if name in DETECTORS:
            raise ValueError(f"detector {name!r} is registered twice")
        extra = {} if ready is None else {"ready": ready}
        DETECTORS[name] = DetectorEntry(name, build, description, model_file, landmarks, whole_image, **extra)
        return build

    return wrap


def detector_names(*, finds_faces: bool = False) -> tuple[str, ...]:
    """Registered names in registration order; ``finds_faces`` leaves out the whole-image one."""
    return tuple(name for name, entry in DETECTORS.items() if not (finds_faces and entry.whole_image))


def available_detectors(model_path: ModelPath = None) -> tuple[str, ...]:
    """The detectors that can run here without a download (a device may be offline)."""
    return tuple(name for name, entry in DETECTORS.items() if entry.ready(model_path))


def describe_detectors() -> str:
    """``name: description; ...`` for help texts."""
    return "; ".join(f"{name}: {entry.description}" for name, entry in DETECTORS.items())


def make_detector(
    name: str = DEFAULT_DETECTOR,
    model_path: ModelPath = None,
    min_face: int = DEFAULT_MIN_FACE,
    max_side: int = DEFAULT_MAX_SIDE,
) -> Detector:
    """A detector by name, one of ``DETECTORS``; an unknown name or a bad size is an ``OptionError``."""
    entry = DETECTORS.get(name)
    if entry is None:
        raise OptionError(f"unknown detector {name!r}; choose from {', '.join(DETECTORS)}")
    return entry.build(model_path, min_face, max_side)


class _ScaledDetector(ABC):
    """Runs ``_detect`` on a copy no larger than ``max_side`` and maps the boxes back, largest first."""

    def __init__(self, min_face: int, max_side: int) -> None:
        if min_face < 0:
            raise OptionError(f"min_face must be >= 0 pixels, got {min_face}")
        if max_side < 1:
            raise OptionError(f"max_side must be >= 1 pixel, got {max_side}")
        self.min_face = min_face
        self.max_side = max_side

    def detect(self, image: np.ndarray) -> list[Box]:
        height, width = image.shape[:2]
        scale = min(1.0, self.max_side / max(height, width))
        small = image
        if scale < 1.0:
            small = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        boxes = []
        for x, y, w, h in self._detect(small, max(1, int(self.min_face * scale))):
            x0, y0 = max(0, round(x / scale)), max(0, round(y / scale))
            x1, y1 = min(width, round((x + w) / scale)), min(height, round((y + h) / scale))
            if min(x1 - x0, y1 - y0) >= self.min_face:
                boxes.append((x0, y0, x1 - x0, y1 - y0))
        return sorted(boxes, key=lambda b: b[2] * b[3], reverse=True)

    @abstractmethod
    def _detect(self, image: np.ndarray, min_size: int) -> np.ndarray:
        """(n, 4) float or int boxes in ``image``'s pixels, at least ``min_size`` wide."""


class HaarDetector(_ScaledDetector):
    """OpenCV's ``haarcascade_frontalface_default.xml``: fast, frontal faces only."""

    def __init__(
        self,
        min_face: int = DEFAULT_MIN_FACE,
        max_side: int = DEFAULT_MAX_SIDE,
        scale_factor: float = 1.1,
        min_neighbors: int = 5,
    ) -> None:
        super().__init__(min_face, max_side)
        if not hasattr(cv2, "CascadeClassifier") or not hasattr(cv2, "data"):
            raise ModelLoadError(
                f"OpenCV {cv2.__version__} ships no Haar cascades: "
                "pip install 'opencv-python-headless<5', or use --detector yunet"
            )
        path = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"
        self._cascade = cv2.CascadeClassifier(str(path))
        if self._cascade.empty():
            raise ModelLoadError(f"{path}: cannot load OpenCV's Haar face cascade")
        self.scale_factor = scale_factor
        self.min_neighbors = min_neighbors

    def _detect(self, image: np.ndarray, min_size: int) -> np.ndarray:
        faces = self._cascade.detectMultiScale(
            cv2.equalizeHist(to_gray(image)),
            scaleFactor=self.scale_factor,
            minNeighbors=self.min_neighbors,
            minSize=(min_size, min_size),
        )
        return np.asarray(faces).reshape(-1, 4)


class YuNetDetector(_ScaledDetector):
    """``cv2.FaceDetectorYN`` with the YuNet ONNX model.

    The network keeps the input size as state, so calls are serialized (the demo serves threads).
    """

    def __init__(
        self,
        model_path: str | Path | None = None,
        min_face: int = DEFAULT_MIN_FACE,
        max_side: int = DEFAULT_MAX_SIDE,
        score_threshold: float = 0.7,
    ) -> None:
        super().__init__(min_face, max_side)
        path = yunet_model_path(model_path)
        try:
            self._net = cv2.FaceDetectorYN.create(str(path), "", (320, 320), score_threshold, 0.3, 5000)
        except cv2.error as exc:
            raise ModelLoadError(f"{path}: not a usable YuNet face detector model ({exc.err})") from exc
        self._lock = threading.Lock()

    def _detect(self, image: np.ndarray, min_size: int) -> np.ndarray:
        bgr = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR) if image.ndim == 2 else image
        with self._lock:
            self._net.setInputSize((bgr.shape[1], bgr.shape[0]))
            _, faces = self._net.detect(bgr)
        if faces is None:
            return np.zeros((0, 4))
        return faces[:, :4]


class WholeImage:
    """Detector ``none``: the input already is a face crop."""

    def detect(self, image: np.ndarray) -> list[Box]:
        return [(0, 0, image.shape[1], image.shape[0])]


@register_detector("haar", "OpenCV's frontal-face Haar cascade, no download")
def _haar(model_path: ModelPath, min_face: int, max_side: int) -> Detector:
    return HaarDetector(min_face, max_side)


def _yunet_ready(model_path: ModelPath) -> bool:
    return model_path is not None or (cache_dir() / YUNET_FILENAME).is_file()


@register_detector(
    "yunet",
    "YuNet (cv2.FaceDetectorYN), more accurate and finds turned faces; needs its ONNX model",
    model_file=True,
    ready=_yunet_ready,
)
def _yunet(model_path: ModelPath, min_face: int, max_side: int) -> Detector:
    return YuNetDetector(model_path, min_face, max_side)


@register_detector("none", "no detection, each input already is a face crop", whole_image=True)
def _whole_image(model_path: ModelPath, min_face: int, max_side: int) -> Detector:
    return WholeImage()


def cache_dir() -> Path:
    """Where downloaded detector models live: ``$FEREDGE_CACHE`` or ``~/.cache/feredge``."""
    return Path(os.environ.get("FEREDGE_CACHE") or Path.home() / ".cache" / "feredge")


def yunet_model_path(explicit: str | Path | None = None) -> Path:
    """The YuNet model: the explicit path, else the verified cache copy, downloading it if missing."""
    if explicit is not None:
        path = Path(explicit)
        if not path.is_file():
            raise ModelLoadError(f"{path}: detector model file not found")
        return path
    cached = cache_dir() / YUNET_FILENAME
    if cached.is_file() and _sha256(cached.read_bytes()) == YUNET_SHA256:
        return cached
    _download_yunet(cached)
    return cached


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _download_yunet(target: Path) -> None:
    hint = f"download {YUNET_URL} yourself and pass --detector-model PATH (or save it as {target})"
    try:
        with urllib.request.urlopen(YUNET_URL, timeout=30) as response:
            data = response.read()
    except OSError as exc:
        raise ModelLoadError(f"cannot download the YuNet face detector ({exc}); {hint}") from exc
    digest = _sha256(data)
    if digest != YUNET_SHA256:
        raise ModelLoadError(f"downloaded YuNet model has sha256 {digest}, expected {YUNET_SHA256}; not saved. {hint}")
    atomic_write_bytes(target, data)
