"""Image bytes (or a webcam frame) in, a JSON-ready result out: the one code path behind the UI and REST.

TFLite interpreters and OpenCV cascades are not thread-safe, and loading one costs far more than a
request, so each (model, detector, threads) gets one cached recognizer guarded by its own lock.
Decoding happens outside the lock, so concurrent requests overlap everywhere but in the model call.
The cache is bounded because every key part is checked against a fixed set of choices.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from feredge.edge.artifacts import display_names
from feredge.edge.decode import ScaledImage, decode_image_scaled
from feredge.edge.detectors import DEFAULT_DETECTOR, YuNetDetector, available_detectors
from feredge.edge.errors import FeredgeError, ImageError, ModelLoadError
from feredge.edge.model import DEFAULT_MODEL, default_threads, shipped_models
from feredge.edge.recognizer import EmotionRecognizer, Face

MAX_UPLOAD_BYTES = 10 * 1024 * 1024


class DemoRequestError(FeredgeError, ValueError):
    """A request names an unknown model or detector, or a thread count out of range."""


class UploadTooLargeError(ImageError):
    """An upload is larger than the demo accepts (``MAX_UPLOAD_BYTES``)."""


def model_choices(paths: list[str | Path]) -> dict[str, Path]:
    """Display name -> model file: the given files, then the models shipped with the package.

    Names follow the one rule of ``feredge.edge.artifacts.display_names`` (the stem unless stems clash).
    """
    files = [Path(p) for p in paths]
    given = {f.resolve() for f in files}
    files += [f for f in shipped_models() if f.resolve() not in given]
    return dict(zip(display_names(files), files, strict=True))


@dataclass
class Analysis:
    """One request's answer; ``decoded`` is the BGR or gray image (maybe decoded at reduced size,
    see ``decode_image_scaled``) with the original size the boxes refer to."""

    model: str
    detector: str
    threads: int
    faces: list[Face]
    timings: dict[str, float]
    decoded: ScaledImage

    @property
    def image(self) -> np.ndarray:
        return self.decoded.image

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record; ``timings`` has the keys of ``feredge predict --json`` (milliseconds)."""
        width, height = self.decoded.original_size
        return {
            "model": self.model,
            "detector": self.detector,
            "threads": self.threads,
            "image_size": [width, height],
            "faces": [face.to_dict() for face in self.faces],
            "timings": {key: round(value, 3) for key, value in self.timings.items()},
        }


@dataclass
class _Slot:
    recognizer: EmotionRecognizer
    lock: threading.Lock


class DemoService:
    """Cached recognizers for a fixed set of models and detectors, shared by all requests.

    Every model is loaded once at construction (default detector and threads), and a YuNet
    ``detector_model`` is loaded once too, so a bad model file fails at start-up rather than on the
    first request. ``labels`` (a preset or a comma list) labels models without feredge metadata.
    """

    def __init__(
        self,
        models: Mapping[str, str | Path],
        detector_model: str | Path | None = None,
        max_upload_bytes: int = MAX_UPLOAD_BYTES,
        labels: str | Iterable[str] | None = None,
    ) -> None:
        if not models:
            raise ModelLoadError(f"no default model is installed (expected {DEFAULT_MODEL}); pass --model PATH")
        if detector_model is not None:
            YuNetDetector(detector_model)  # raises ModelLoadError for a missing or unusable file
        self.labels = labels
        self.models = {name: Path(path) for name, path in models.items()}
        self.detectors = available_detectors(detector_model)
        self.detector_model = detector_model
        self.max_upload_bytes = max_upload_bytes
        self.default_model = next(iter(self.models))
        self.default_detector = DEFAULT_DETECTOR
        self.default_threads = default_threads()
        self.max_threads = max(self.default_threads, os.cpu_count() or 1)
        self._slots: dict[tuple[str, str, int], _Slot] = {}
        self._slots_lock = threading.Lock()
        for name in self.models:
            self._slot(name, self.default_detector, self.default_threads)

    def analyze(
        self,
        image: bytes | np.ndarray,
        model: str | None = None,
        detector: str | None = None,
        threads: int | None = None,
        name: str = "upload",
    ) -> Analysis:
        """Decode ``image`` (encoded bytes, or a BGR/gray array such as a webcam frame) and find its faces.

        Raises ``UploadTooLargeError``, ``ImageError`` (named after ``name``) or ``DemoRequestError``.
        """
        model = model or self.default_model
        detector = detector or self.default_detector
        threads = threads or self.default_threads
        slot = self._slot(model, detector, threads)
        if isinstance(image, bytes) and len(image) > self.max_upload_bytes:
            raise UploadTooLargeError(f"{name}: larger than the {self.max_upload_bytes / 2**20:g} MB upload limit")
        start = time.perf_counter()
        decoded = decode_image_scaled(image, name)
        decode_ms = (time.perf_counter() - start) * 1000.0
        with slot.lock:
            faces = slot.recognizer.predict(decoded)
            timings = replace(slot.recognizer.timings, decode_ms=decode_ms).as_dict()
        return Analysis(model, detector, threads, faces, timings, decoded)

    def _slot(self, model: str, detector: str, threads: int) -> _Slot:
        if model not in self.models:
            raise DemoRequestError(f"unknown model {model!r}; choose from {', '.join(self.models)}")
        if detector not in self.detectors:
            raise DemoRequestError(f"unknown detector {detector!r}; choose from {', '.join(self.detectors)}")
        if not 1 <= threads <= self.max_threads:
            raise DemoRequestError(f"threads must be between 1 and {self.max_threads}, got {threads}")
        key = (model, detector, threads)
        with self._slots_lock:
            if key not in self._slots:
                recognizer = EmotionRecognizer(
                    self.models[model],
                    detector=detector,
                    threads=threads,
                    labels=self.labels,
                    detector_model=self.detector_model,
                )
                self._slots[key] = _Slot(recognizer, threading.Lock())
            return self._slots[key]
