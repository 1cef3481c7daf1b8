"""Whole-photo evaluation: detector -> crop -> model on a class-folder set of real photos.

Cropped-face accuracy says nothing about a photo where a detector has to find the face first and the
crop has to look like a training crop. Here every photo goes through a detector, the largest face is
cropped with a framing (margin and vertical offset, or landmark alignment) and classified; a photo
where no face is found is a miss: wrong in the accuracy and counted in ``found_rate``. One run
compares detectors x framings x models (and the ``fer`` and ``facex`` whole pipelines), each detector running once
per photo, so the rows differ only in what they vary.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from feredge.benchmarks.models import predict_crops_batched
from feredge.edge.align import TEMPLATES, align_detected
from feredge.edge.decode import IMAGE_SUFFIXES, decode_image
from feredge.edge.detectors import Detection, detect_faces
from feredge.edge.errors import DataError, ImageError
from feredge.edge.labels import canonical
from feredge.edge.metrics import classification_metrics
from feredge.edge.model import EmotionModel
from feredge.edge.preprocess import crop_face

log = logging.getLogger(__name__)

NO_FACE = "(no face)"
ALIGN_SCALE = 2  # aligned crops are warped at twice the model's input size, then resized by the contract


@dataclass(frozen=True)
class Photo:
    path: Path
    label: str
    image: np.ndarray


def read_photos(root: str | Path) -> tuple[list[Photo], list[str]]:
    """Every readable image under ``root/<class>/``, and why each unreadable one was skipped.

    The reasons are returned, not only logged, so a report can say how many photos it did not score.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: {'is a file, not a photo folder' if root.exists() else 'photo folder not found'}")
    photos, bad = [], []
    for folder in sorted(d for d in root.iterdir() if d.is_dir()):
        for path in sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
            try:
                photos.append(Photo(path, canonical(folder.name), decode_image(path)))
            except ImageError as exc:
                bad.append(str(exc))
    if bad:
        log.warning("skipped %d unreadable photo(s): %s", len(bad), "; ".join(bad[:3]))
    if not photos:
        raise DataError(f"{root}: no images in class folders (expected {root}/<class>/*.jpg)")
    return photos, bad


def load_photos(root: str | Path) -> list[Photo]:
    """The readable photos of ``read_photos``; unreadable files are skipped with a warning."""
    return read_photos(root)[0]


def class_counts(photos: Sequence[Photo]) -> dict[str, int]:
    """Photos per class, by class name."""
    counts: dict[str, int] = {}
    for photo in photos:
        counts[photo.label] = counts.get(photo.label, 0) + 1
    return dict(sorted(counts.items()))


def unknown_classes(photos: Sequence[Photo], labels: Sequence[str]) -> dict[str, int]:
    """Photos per class of the classes not among ``labels``: a model cannot be scored on them."""
    return {label: n for label, n in class_counts(photos).items() if label not in labels}


def check_known_classes(photos: Sequence[Photo], labels: Sequence[str], model: str) -> None:
    """``DataError`` unless some photo's class is among ``labels``: otherwise no row could be scored."""
    if not any(photo.label in labels for photo in photos):
        raise DataError(
            f"no photo class folder is among the labels of model {model} ({', '.join(labels)}); "
            f"found {', '.join(class_counts(photos))}"
        )


Cropper = Callable[[np.ndarray, Detection], np.ndarray]


@dataclass(frozen=True)
class Framing:
    """How the largest face becomes a crop: a square box crop (margin, offset) or landmark alignment."""

    margin: float = 0.0
    offset: float = 0.0
    align: bool = False

    @property
    def name(self) -> str:
        kind = "align" if self.align else "box"
        return f"{kind} m{self.margin:+.2f} o{self.offset:+.2f}"

    def crop(self, image: np.ndarray, face: Detection, detector: str, input_size: int) -> np.ndarray:
        if self.align:
            return align_detected(image, detector, face.landmarks, ALIGN_SCALE * input_size, self.margin, self.offset)
        return crop_face(image, face.box, self.margin, self.offset)

    def cropper(self, detector: str, input_size: int) -> Cropper:
        """``crop`` bound to one detector and model input size."""
        return lambda image, face: self.crop(image, face, detector, input_size)


@dataclass
class Detections:
    """The largest face per photo (None: no face) of one detector, and its milliseconds per photo."""

    detector: str
    faces: list[Detection | None]
    ms: list[float]

    @property
    def landmarks(self) -> bool:
        return any(face is not None and face.landmarks is not None for face in self.faces)


def run_detector(name: str, detector: Any, photos: Sequence[Photo]) -> Detections:
    """Detect once per photo (``detector`` offers ``detect`` or ``detect_faces``), timed one by one."""
    faces, ms = [], []
    for photo in photos:
        start = time.perf_counter()
        found = detect_faces(detector, photo.image)
        ms.append((time.perf_counter() - start) * 1000.0)
        faces.append(found[0] if found else None)
    return Detections(name, faces, ms)


def framings_for(detections: Detections, margins: Sequence[float], offsets: Sequence[float], align: bool):
    """Box framings for every margin x offset, plus aligned ones when asked and the detector can."""
    rows = [Framing(m, o) for m in margins for o in offsets]
    if align and detections.landmarks and detections.detector in TEMPLATES:
        rows += [Framing(m, o, align=True) for m in margins for o in offsets]
    return rows


def score_row(
    classifier: EmotionModel, photos: Sequence[Photo], detections: Detections, crop: Cropper, **describe: Any
) -> dict[str, Any] | None:
    """One row: ``classifier`` on the crops ``crop`` makes of each photo's largest face; misses count as wrong.

    Photos of classes the model does not know are left out (and counted); None when none is left.
    """
    column = {label: i for i, label in enumerate(classifier.labels)}
    keep = [i for i, photo in enumerate(photos) if photo.label in column]
    if not keep:
        return None
    found = [i for i in keep if detections.faces[i] is not None]
    predicted: list[int | None] = [None] * len(photos)
    if found:
        start = time.perf_counter()
        probs = predict_crops_batched(classifier, [crop(photos[i].image, detections.faces[i]) for i in found])
        classify_ms = (time.perf_counter() - start) * 1000.0 / len(found)
        for i, best in zip(found, probs.argmax(1), strict=True):
            predicted[i] = int(best)
    else:
        classify_ms = 0.0
    return {
        **describe,
        "detector": detections.detector,
        **photo_scores([photos[i].label for i in keep], [predicted[i] for i in keep], classifier.labels),
        "left_out": len(photos) - len(keep),
        "detect_ms": float(np.mean([detections.ms[i] for i in keep])),
        "classify_ms": classify_ms,
    }


def photo_scores(truth: Sequence[str], predicted: Sequence[int | None], labels: Sequence[str]) -> dict[str, Any]:
    """Found-rate, accuracy, balanced accuracy, macro-F1, per-class F1 and answer counts; ``None`` (no face)
    is a miss.

    A miss gets its own "no face" column, so it is wrong in the accuracy (and in its class's recall)
    and visible in the matrix. Balanced accuracy is the mean recall over the true classes: a pipeline
    that answers neutral for most photos scores low on it however many neutral photos the set holds.
    """
    column = {label: i for i, label in enumerate(labels)}
    miss = len(labels)
    answers = [miss if p is None else p for p in predicted]
    columns = (*labels, NO_FACE)
    metrics = classification_metrics([column[label] for label in truth], answers, columns)
    matrix = np.asarray(metrics["confusion_matrix"])
    found = sum(p is not None for p in predicted)
    return {
        "photos": len(truth),
        "found": found,
        "found_rate": found / len(truth),
        "accuracy": metrics["accuracy"],
        "balanced_accuracy": metrics["balanced_accuracy"],
        "macro_f1": metrics["macro_f1"],
        "f1": {label: metrics["per_class"][label]["f1"] for label in labels},
        "predicted": {label: int(n) for label, n in zip(columns, matrix.sum(0), strict=True)},
        "truth": {label: int(n) for label, n in zip(columns, matrix.sum(1), strict=True)},
        "confusion_matrix": metrics["confusion_matrix"],
        "labels": metrics["labels"],
    }


def evaluate_grid(
    photos: Sequence[Photo],
    models: dict[str, EmotionModel],
    detections: Sequence[Detections],
    margins: Sequence[float],
    offsets: Sequence[float],
    align: bool,
) -> list[dict[str, Any]]:
    """Every model x detector x framing, as rows of ``score_row``."""
    rows = []
    for model_name, model in models.items():
        for found in detections:
            for framing in framings_for(found, margins, offsets, align):
                row = score_row(
                    model,
                    photos,
                    found,
                    framing.cropper(found.detector, model.spec.input_size),
                    model=model_name,
                    framing=framing.name,
                    margin=framing.margin,
                    offset=framing.offset,
                    align=framing.align,
                )
                if row is not None:
                    rows.append(row)
                    log.info("%-12s %-10s %-18s acc %.3f", model_name, found.detector, framing.name, row["accuracy"])
    return rows


def best_rows(rows: Sequence[dict[str, Any]], key: str = "detector") -> list[dict[str, Any]]:
    """The most accurate row per model and ``key`` (ties: higher macro-F1), in first-seen order."""
    best: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:
        group = (row["model"], row[key])
        current = best.get(group)
        if current is None or (row["accuracy"], row["macro_f1"]) > (current["accuracy"], current["macro_f1"]):
            best[group] = row
    return list(best.values())
