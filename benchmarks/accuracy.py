"""Accuracy, macro-F1 and the confusion matrix of a model on a face data set, scored as every stage scores.

The faces come from the one loader (``feredge.edge.dataset``, no TensorFlow), at each model's input
size, and are scored by its ``score_batches``; class folders are matched to a model's labels by
canonical name, and classes the model does not know are left out and listed. On FER+ data (its
folder layout, or ``fer2013.csv`` with ``ferplus_votes``) the targets are the annotators' majority,
the votes give a cross-entropy, and a ``fer2013.csv`` is also scored on its own FER2013 labels, so
figures from before FER+ stay comparable.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from feredge.benchmarks.models import CropFedModel, predict_crops_batched
from feredge.edge.calibration import apply_temperature, expected_calibration_error
from feredge.edge.dataset import UNREADABLE, Dataset, Split, load_dataset, score_batches, select_split
from feredge.edge.errors import DataError
from feredge.edge.metrics import classification_metrics, vote_cross_entropy
from feredge.edge.model import EmotionModel

SUMMARY_SIZE = 48  # the size the data is first loaded (and checked) at


@dataclass
class AccuracyData:
    """A data set for the accuracy columns, loaded once per input size that a model asks for.

    ``ferplus_votes`` is FER+'s ``fer2013new.csv`` for a ``fer2013.csv`` root (the folder layout needs none)."""

    root: Path
    ferplus_votes: Path | None = None
    _loaded: dict[tuple[int, str, bool], Dataset] = field(default_factory=dict, repr=False)

    def prepared(self, size: int, photometric: str = "none", votes: bool = True) -> tuple[tuple[str, ...], Split]:
        """(class names, faces as a model with this contract sees them): val if the data has one, else all.

        ``votes=False`` reads a ``fer2013.csv`` root without its FER+ votes: FER2013's own labels."""
        key = (size, photometric, votes)
        if key not in self._loaded:
            self._loaded[key] = load_dataset(
                self.root,
                input_size=size,
                make_val=False,
                photometric=photometric,
                ferplus_votes=self.ferplus_votes if votes else None,
            )
        dataset = self._loaded[key]
        return dataset.labels, select_split(dataset)[1]

    @property
    def has_fer2013_labels(self) -> bool:
        """True when FER+ votes come with a ``fer2013.csv``, whose own labels can be scored too."""
        return self.ferplus_votes is not None

    def summary(self) -> dict[str, Any]:
        labels, split = self.prepared(SUMMARY_SIZE)
        counts = split.counts(len(labels))
        dataset = self._loaded[SUMMARY_SIZE, "none", True]
        return {
            "path": str(self.root),
            "ferplus_votes": None if self.ferplus_votes is None else str(self.ferplus_votes),
            "layout": dataset.layout,
            "votes": split.votes is not None,
            "samples": len(split),
            "unreadable": dataset.skipped[UNREADABLE],
            "left_out_all_splits": dict(sorted(dataset.skipped.items())),  # the loader counts train too
            "classes": {name: int(n) for name, n in zip(labels, counts, strict=True)},
        }


def load_accuracy_data(root: str | Path, ferplus_votes: str | Path | None = None) -> AccuracyData:
    """Load ``root`` (any layout the loader reads) once now, so a bad data set fails before any timing."""
    data = AccuracyData(Path(root), None if ferplus_votes is None else Path(ferplus_votes))
    data.prepared(SUMMARY_SIZE)
    return data


def model_accuracy(model: EmotionModel, data: AccuracyData) -> dict[str, Any]:
    """Classification metrics of ``model`` on the faces of the classes it knows.

    Scores come from ``model.predict``, so test-time flip averaging is applied whenever the model's
    metadata asks for it, exactly as at serving time, and so are the model's own prior correction
    (``prior_tau``) and calibration temperature: ``ece`` is the expected calibration error (15 bins)
    of the scores users get, ``ece_uncalibrated`` that of the same scores with the temperature taken
    out. On FER+ data ``vote_cross_entropy`` scores the probabilities against the annotators' votes,
    and ``fer2013_labels`` holds the metrics on the same split's FER2013 labels when the data has them.
    """
    faces, scores = _scored(model, data, votes=True)
    metrics = classification_metrics(faces.targets, scores.argmax(1), model.labels)
    classes, _ = data.prepared(SUMMARY_SIZE)
    metrics["skipped_classes"] = [name for name in classes if name not in model.labels]
    raw = apply_temperature(scores, 1.0 / model.metadata.temperature)  # as the model scored before calibration
    metrics["temperature"] = model.metadata.temperature
    metrics["prior_tau"] = model.metadata.prior_tau
    metrics["ece"] = expected_calibration_error(scores, faces.targets)
    metrics["ece_uncalibrated"] = expected_calibration_error(raw, faces.targets)
    if faces.votes is not None:
        metrics["vote_cross_entropy"] = vote_cross_entropy(faces.votes, scores)
    if data.has_fer2013_labels:
        original, original_scores = _scored(model, data, votes=False)
        metrics["fer2013_labels"] = classification_metrics(original.targets, original_scores.argmax(1), model.labels)
    return metrics


def _scored(model: EmotionModel, data: AccuracyData, votes: bool) -> tuple[Split, np.ndarray]:
    """The faces of the model's classes (targets and votes in its label order) and its scores for them."""
    crop_fed = isinstance(model, CropFedModel)
    size = model.crop_size if crop_fed else model.spec.input_size
    photometric = "none" if crop_fed else model.spec.photometric
    classes, split = data.prepared(size, photometric, votes)
    faces = _in_model_order(split, classes, model.labels)
    if not crop_fed:
        return faces, score_batches(model.predict, faces, model.spec)
    return faces, predict_crops_batched(model, list(faces.images))


def _in_model_order(split: Split, classes: tuple[str, ...], labels: tuple[str, ...]) -> Split:
    """``split``'s faces of the classes among ``labels``, their targets and vote columns in ``labels``' order.

    Votes for classes the model lacks are dropped, so the vote distribution is renormalized over its classes."""
    column = {label: i for i, label in enumerate(labels)}
    known = [i for i, name in enumerate(classes) if name in column]
    if not known:
        raise DataError(
            f"none of the data's classes ({', '.join(classes)}) is a label of the model ({', '.join(labels)})"
        )
    kept = split.take(np.flatnonzero(np.isin(split.targets, known)))
    if not len(kept):
        raise DataError(f"no face of the model's classes ({', '.join(labels)}) in the data")
    targets = np.array([column[classes[t]] for t in kept.targets], np.int64)
    votes = None
    if kept.votes is not None:
        votes = np.zeros((len(kept), len(labels)), np.float32)
        for i in known:
            votes[:, column[classes[i]]] = kept.votes[:, i]
    return Split(kept.images, targets, votes)
