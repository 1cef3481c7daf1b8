"""Evaluation of a Keras, TFLite or ONNX model on any supported data layout, scored like the runtime."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from feredge.edge.atomic import atomic_write_text
from feredge.edge.calibration import apply_temperature
from feredge.edge.dataset import load_dataset, score_batches, select_split
from feredge.edge.metadata import ModelMetadata
from feredge.edge.metrics import classification_metrics, vote_cross_entropy
from feredge.edge.tta import flip_average
from feredge.plots import plot_confusion_matrix
from feredge.train.keras_io import KERAS_SUFFIXES

log = logging.getLogger(__name__)


def load_predictor(
    path: str | Path, labels=None, threads: int | None = None, prior_tau: float | None = None
) -> tuple[Callable[[np.ndarray], np.ndarray], ModelMetadata]:
    """A batch predictor and its metadata for a run folder, a Keras file, a ``.tflite`` or ``.onnx``.

    The predictor applies the metadata's flip averaging itself, as the edge runtime's models do, and
    takes ``prior_tau`` times the log training prior from the scores (None: the model's own τ).
    """
    from feredge.edge.model import load_model, prior_shift

    path = Path(path)
    if path.is_dir() or path.suffix.lower() in KERAS_SUFFIXES:
        from feredge.train.keras_io import load_source

        source = load_source(path, labels)
        model, metadata = source.model, source.metadata
        shift = prior_shift(metadata, prior_tau, str(path))

        def keras_predict(batch: np.ndarray) -> np.ndarray:
            probs = (
                flip_average(model.predict_on_batch, batch)
                if metadata.test_time_flip
                else model.predict_on_batch(batch)
            )
            return apply_temperature(np.asarray(probs, np.float32), 1.0, shift)

        return keras_predict, metadata
    emotion_model = load_model(path, labels=labels, threads=threads)
    emotion_model.checked_prior_tau(prior_tau)  # a bad τ fails before the data loads
    return lambda batch: emotion_model.predict(batch, prior_tau), emotion_model.metadata


def evaluate(
    model_path: str | Path,
    data: str | Path,
    split: str = "auto",
    labels=None,
    threads: int | None = None,
    ferplus_votes: str | Path | None = None,
    prior_tau: float | None = None,
) -> dict[str, Any]:
    """Metrics of a model on one split of a data set, labels matched by name, at ``prior_tau`` (None: its own).

    On FER+ data the targets are the annotators' majority (the paper's rule) and the report adds the
    mean cross-entropy against the votes.
    """
    predict, metadata = load_predictor(model_path, labels, threads, prior_tau)
    dataset = load_dataset(
        data,
        metadata.labels,
        metadata.input_size,
        make_val=False,
        photometric=metadata.photometric,
        ferplus_votes=ferplus_votes,
    )
    split, chosen = select_split(dataset, split)
    scores = score_batches(predict, chosen, metadata.preprocess_spec())
    metrics = classification_metrics(chosen.targets, scores.argmax(1), metadata.labels)
    if chosen.votes is not None:
        metrics["vote_cross_entropy"] = vote_cross_entropy(chosen.votes, scores)
    tau = metadata.prior_tau if prior_tau is None else prior_tau
    metrics.update(model=str(model_path), data=str(data), split=split, layout=dataset.layout, prior_tau=tau)
    return metrics


def write_evaluation(metrics: dict[str, Any], out: str | Path) -> None:
    out = Path(out)
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    plot_confusion_matrix(metrics, out / "confusion_matrix.png", title=Path(metrics["model"]).name)
