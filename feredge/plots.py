"""Figures shared by training, evaluation and the benchmarks (matplotlib, imported on first use).

They sit beside the CLI rather than in ``edge/`` because the runtime install has no matplotlib and
draws nothing; train/ and benchmarks/ add their own figures on top of these helpers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from feredge.edge.atomic import atomic_path


def pyplot():
    """matplotlib's pyplot on the Agg backend: figures are written to files, never shown."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_confusion_matrix(metrics: dict[str, Any], path: str | Path, title: str = "Confusion matrix") -> Path:
    """Row-normalized confusion matrix with counts, written atomically as PNG."""
    plt = pyplot()
    matrix = np.asarray(metrics["confusion_matrix"], float)
    labels = metrics["labels"]
    rows = matrix.sum(axis=1, keepdims=True)
    norm = np.divide(matrix, rows, out=np.zeros_like(matrix), where=rows > 0)
    fig, ax = plt.subplots(figsize=(1.0 + 0.8 * len(labels), 0.8 + 0.7 * len(labels)))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{title}\nacc {metrics['accuracy']:.3f} · macro-F1 {metrics['macro_f1']:.3f}")
    for i in range(len(labels)):
        for j in range(len(labels)):
            color = "white" if norm[i, j] > 0.5 else "black"
            ax.text(j, i, f"{norm[i, j]:.2f}\n{int(matrix[i, j])}", ha="center", va="center", fontsize=7, color=color)
    fig.tight_layout()
    return save_figure(fig, path)


def save_figure(fig, path: str | Path) -> Path:
    """Write ``fig`` as PNG atomically and close it, so a long run does not accumulate figures."""
    plt = pyplot()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return Path(path)
