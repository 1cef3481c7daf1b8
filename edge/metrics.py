"""Classification metrics shared by evaluate, training, convert's gate and the benchmarks.

Numpy only, so every stage computes macro-F1 the same way; the figures of these metrics live in
``feredge.plots``, outside the runtime, because only the train and bench installs have matplotlib.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Rows are true classes, columns predicted classes."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(y_true, int), np.asarray(y_pred, int)), 1)
    return matrix


def classification_metrics(
    y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray, labels: Sequence[str]
) -> dict[str, Any]:
    """Accuracy, balanced accuracy, macro-F1, per-class precision/recall/F1/support/answers, the confusion matrix.

    A class with no predictions or no support scores 0 for the undefined ratio (sklearn's
    ``zero_division=0``); macro-F1 and balanced accuracy (the mean recall, which is the accuracy under a
    uniform class prior) average over classes that appear in ``y_true``. ``answers`` counts how often
    each class was predicted, so a model that falls back to one class (neutral) shows it against ``support``.
    """
    y_true, y_pred = np.asarray(y_true, int), np.asarray(y_pred, int)
    if y_true.shape != y_pred.shape or y_true.size == 0:
        raise ValueError("y_true and y_pred must be non-empty and of equal length")
    matrix = confusion_matrix(y_true, y_pred, len(labels))
    tp = np.diag(matrix).astype(float)
    support = matrix.sum(axis=1).astype(float)
    predicted = matrix.sum(axis=0).astype(float)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    present = support > 0
    return {
        "accuracy": float(tp.sum() / y_true.size),
        "balanced_accuracy": float(recall[present].mean()) if present.any() else 0.0,
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "samples": int(y_true.size),
        "labels": list(labels),
        "per_class": {
            label: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
                "answers": int(predicted[i]),
            }
            for i, label in enumerate(labels)
        },
        "confusion_matrix": matrix.tolist(),
    }


def vote_cross_entropy(votes: np.ndarray, probs: np.ndarray) -> float:
    """Mean cross-entropy (nats) of predicted probabilities against the annotators' vote distribution.

    It rewards a model for being as unsure as the annotators were, which majority accuracy cannot see.
    """
    votes = np.asarray(votes, np.float64)
    dist = votes / np.maximum(votes.sum(axis=1, keepdims=True), 1e-12)
    return float(-(dist * np.log(np.clip(np.asarray(probs, np.float64), 1e-12, 1.0))).sum(axis=1).mean())


def format_report(metrics: dict[str, Any]) -> str:
    """A plain-text classification report, like sklearn's, with each class's answers beside its support."""
    width = max(len(label) for label in metrics["labels"]) + 2
    lines = [f"{'':<{width}}precision    recall  f1-score   support   answers"]
    for label, row in metrics["per_class"].items():
        lines.append(
            f"{label:<{width}}{row['precision']:9.3f} {row['recall']:9.3f} {row['f1']:9.3f} {row['support']:9d}"
            f" {row.get('answers', 0):9d}"
        )
    lines.append("")
    lines.append(f"{'accuracy':<{width}}{metrics['accuracy']:29.3f} {metrics['samples']:9d}")
    if "balanced_accuracy" in metrics:  # reports saved before it existed lack it
        lines.append(f"{'balanced acc.':<{width}}{metrics['balanced_accuracy']:29.3f}")
    lines.append(f"{'macro-F1':<{width}}{metrics['macro_f1']:29.3f}")
    if "vote_cross_entropy" in metrics:
        lines.append(f"{'CE vs votes':<{width}}{metrics['vote_cross_entropy']:29.3f}")
    return "\n".join(lines)
