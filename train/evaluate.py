"""Evaluation of a Keras, TFLite or ONNX model on any supported data layout, scored like the runtime."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from feredge.edge.atomic import atomic_write_text
from feredge.edge.errors import FeredgeError
from feredge.edge.metadata import ModelMetadata
from feredge.edge.metrics import classification_metrics
from feredge.edge.preprocess import PreprocessSpec, normalize
from feredge.edge.tta import flip_average
from feredge.plots import plot_confusion_matrix
from feredge.train.keras_io import KERAS_SUFFIXES

log = logging.getLogger(__name__)

def predict_scores(
    model_or_predict, split, spec: PreprocessSpec, flip: bool = False, batch_size: int = 256
) -> np.ndarray:
    """Class scores for a split's uint8 faces, normalized by the contract, with optional flip averaging.

    ``model_or_predict`` is a Keras model or any ``(N, S, S, C) -> (N, K)`` callable.
    """
    predict = getattr(model_or_predict, "predict_on_batch", model_or_predict)
    out = []
    for start in range(0, len(split), batch_size):
        faces = split.images[start : start + batch_size].astype(np.float32)
        batch = np.asarray(normalize(faces, spec), np.float32)
        scores = flip_average(predict, batch) if flip else predict(batch)
        out.append(np.asarray(scores, np.float32))
    return np.concatenate(out)


def load_predictor(path: str | Path, labels=None, threads: int | None = None
                   ) -> tuple[Callable[[np.ndarray], np.ndarray], ModelMetadata]:
    """A batch predictor and its metadata for a run folder, a Keras file, a ``.tflite`` or ``.onnx``.

    The predictor applies the metadata's flip averaging itself, as the edge runtime's models do.
    """
    path = Path(path)
    if path.is_dir() or path.suffix.lower() in KERAS_SUFFIXES:
        from feredge.train.keras_io import load_source

        source = load_source(path, labels)
        model, metadata = source.model, source.metadata
        if metadata.test_time_flip:
            return lambda batch: flip_average(model.predict_on_batch, batch), metadata
        return model.predict_on_batch, metadata
    from feredge.edge.model import load_model

    model = load_model(path, labels=labels, threads=threads)
    return model.predict, model.metadata


def evaluate(model_path: str | Path, data: str | Path, split: str = "auto", labels=None,
             threads: int | None = None) -> dict[str, Any]:
    """Metrics of a model on one split of a data set, labels matched by name."""
    from feredge.edge.dataset import Split, load_dataset

    predict, metadata = load_predictor(model_path, labels, threads)
    dataset = load_dataset(data, metadata.labels, metadata.input_size, make_val=False)
    if split == "auto":
        split = "val" if "val" in dataset.splits else ("test" if "test" in dataset.splits else "all")
    if split == "all":
        parts = list(dataset.splits.values())
        chosen = Split(np.concatenate([p.images for p in parts]), np.concatenate([p.targets for p in parts]))
    elif split in dataset.splits:
        chosen = dataset.splits[split]
    else:
        raise FeredgeError(f"{data}: no {split!r} split (has {', '.join(dataset.splits)}); use --split all")
    scores = predict_scores(predict, chosen, metadata.preprocess_spec())
    metrics = classification_metrics(chosen.targets, scores.argmax(1), metadata.labels)
    metrics.update(model=str(model_path), data=str(data), split=split)
    return metrics


def write_evaluation(metrics: dict[str, Any], out: str | Path) -> None:
    out = Path(out)
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    plot_confusion_matrix(metrics, out / "confusion_matrix.png", title=Path(metrics["model"]).name)
