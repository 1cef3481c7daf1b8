"""Accuracy, macro-F1 and the confusion matrix on a folder-per-class data set.

The loader is numpy-only because the training loader needs TensorFlow's install: images go through
the contract's ``decode_image`` and ``prepare_face``, class folders are matched to each model's labels
by canonical name, and the metrics are the ones every other stage reports (``edge/metrics.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from feredge.edge.decode import IMAGE_SUFFIXES, decode_image
from feredge.edge.errors import DataError, ImageError
from feredge.edge.labels import canonical
from feredge.edge.metrics import classification_metrics
from feredge.edge.model import EmotionModel
from feredge.edge.preprocess import prepare_face

BATCH = 64


@dataclass
class FaceFolder:
    """Decoded face images with their class (an index into ``classes``, canonical names)."""

    root: Path
    classes: tuple[str, ...]
    images: list[np.ndarray]
    targets: np.ndarray
    unreadable: int = 0
    _prepared: dict[int, list[np.ndarray]] = field(default_factory=dict, repr=False)

    def prepared(self, size: int) -> list[np.ndarray]:
        """Every image as uint8 gray size x size, computed once per size."""
        if size not in self._prepared:
            self._prepared[size] = [prepare_face(image, size) for image in self.images]
        return self._prepared[size]

    def summary(self) -> dict[str, Any]:
        counts = np.bincount(self.targets, minlength=len(self.classes))
        return {
            "path": str(self.root),
            "samples": len(self.images),
            "unreadable": self.unreadable,
            "classes": {name: int(n) for name, n in zip(self.classes, counts, strict=True)},
        }


def load_face_folder(root: str | Path) -> FaceFolder:
    """``root/<class>/*.jpg`` -> ``FaceFolder``; unreadable images are counted and skipped."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: data folder not found")
    by_class: dict[str, list[np.ndarray]] = {}
    unreadable = 0
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        images = by_class.setdefault(canonical(folder.name), [])
        for path in sorted(folder.iterdir()):
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            try:
                images.append(decode_image(path))
            except ImageError:
                unreadable += 1
    classes = tuple(name for name, images in by_class.items() if images)
    if not classes:
        raise DataError(f"{root}: no images in class folders (expected {root}/<class>/*.jpg)")
    targets = np.concatenate([np.full(len(by_class[name]), i) for i, name in enumerate(classes)])
    images = [image for name in classes for image in by_class[name]]
    return FaceFolder(root, classes, images, targets, unreadable)


def evaluate(model: EmotionModel, data: FaceFolder) -> dict[str, Any]:
    """Classification metrics of ``model`` on the images of the classes it knows.

    Predictions go through ``model.predict``, so test-time flip averaging is applied whenever the
    model's metadata asks for it, exactly as at serving time.
    """
    column = {label: i for i, label in enumerate(model.labels)}
    known = [i for i, name in enumerate(data.classes) if name in column]
    if not known:
        raise DataError(
            f"none of the data's classes ({', '.join(data.classes)}) is a label of the model "
            f"({', '.join(model.labels)})"
        )
    keep = np.flatnonzero(np.isin(data.targets, known))
    crops = data.prepared(model.spec.input_size)
    y_true = np.array([column[data.classes[data.targets[i]]] for i in keep])
    y_pred = []
    for start in range(0, len(keep), BATCH):
        batch = model.preprocess([crops[i] for i in keep[start : start + BATCH]])
        y_pred.append(np.argmax(model.predict(batch), axis=1))
    metrics = classification_metrics(y_true, np.concatenate(y_pred), model.labels)
    metrics["skipped_classes"] = [name for name in data.classes if name not in column]
    return metrics
