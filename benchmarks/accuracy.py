"""Accuracy, macro-F1 and the confusion matrix of a model on a face data set, scored as every stage scores.

The faces come from the one loader (``feredge.edge.dataset``, no TensorFlow), at each model's input
size, and are scored by its ``score_batches``; class folders are matched to a model's labels by
canonical name, and classes the model does not know are left out and listed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from feredge.edge.calibration import apply_temperature, expected_calibration_error
from feredge.edge.dataset import UNREADABLE, Dataset, Split, load_dataset, score_batches, select_split
from feredge.edge.errors import DataError
from feredge.edge.metrics import classification_metrics
from feredge.edge.model import EmotionModel

SUMMARY_SIZE = 48  # the size the data is first loaded (and checked) at


@dataclass
class AccuracyData:
    """A data set for the accuracy columns, loaded once per input size that a model asks for."""

    root: Path
    _loaded: dict[tuple[int, str], Dataset] = field(default_factory=dict, repr=False)

    def prepared(self, size: int, photometric: str = "none") -> tuple[tuple[str, ...], Split]:
        """(class names, faces as a model with this contract sees them): val if the data has one, else all."""
        key = (size, photometric)
        if key not in self._loaded:
            self._loaded[key] = load_dataset(self.root, input_size=size, make_val=False, photometric=photometric)
        dataset = self._loaded[key]
        return dataset.labels, select_split(dataset)[1]

    def summary(self) -> dict[str, Any]:
        labels, split = self.prepared(SUMMARY_SIZE)
        counts = split.counts(len(labels))
        return {
            "path": str(self.root),
            "samples": len(split),
            "unreadable": self._loaded[SUMMARY_SIZE, "none"].skipped[UNREADABLE],
            "classes": {name: int(n) for name, n in zip(labels, counts, strict=True)},
        }


def load_accuracy_data(root: str | Path) -> AccuracyData:
    """Load ``root`` (any layout the loader reads) once now, so a bad data set fails before any timing."""
    data = AccuracyData(Path(root))
    data.prepared(SUMMARY_SIZE)
    return data


def model_accuracy(model: EmotionModel, data: AccuracyData) -> dict[str, Any]:
    """Classification metrics of ``model`` on the faces of the classes it knows.

    Scores come from ``model.predict``, so test-time flip averaging is applied whenever the model's
    metadata asks for it, exactly as at serving time, and so is the model's calibration temperature:
    ``ece`` is the expected calibration error (15 bins) of the scores users get, ``ece_uncalibrated``
    that of the same scores with the temperature taken out.
    """
    classes, split = data.prepared(model.spec.input_size, model.spec.photometric)
    column = {label: i for i, label in enumerate(model.labels)}
    known = [i for i, name in enumerate(classes) if name in column]
    if not known:
        raise DataError(
            f"none of the data's classes ({', '.join(classes)}) is a label of the model ({', '.join(model.labels)})"
        )
    keep = np.flatnonzero(np.isin(split.targets, known))
    faces = Split(split.images[keep], np.array([column[classes[t]] for t in split.targets[keep]], np.int64))
    scores = score_batches(model.predict, faces, model.spec)
    metrics = classification_metrics(faces.targets, scores.argmax(1), model.labels)
    metrics["skipped_classes"] = [name for name in classes if name not in column]
    raw = apply_temperature(scores, 1.0 / model.metadata.temperature)  # as the model scored before calibration
    metrics["temperature"] = model.metadata.temperature
    metrics["ece"] = expected_calibration_error(scores, faces.targets)
    metrics["ece_uncalibrated"] = expected_calibration_error(raw, faces.targets)
    return metrics
