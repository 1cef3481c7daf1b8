"""Training curves from a run's history rows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from feredge.plots import pyplot, save_figure


def plot_training_curves(history: list[dict[str, Any]], path: str | Path) -> Path:
    """Loss, accuracy and val macro-F1 per epoch, across both stages (a dashed line marks the switch)."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    x = list(range(1, len(history) + 1))
    panels = [
        ("loss", ["loss", "val_loss"]),
        ("accuracy", ["accuracy", "val_accuracy"]),
        ("macro-F1 / lr", ["val_macro_f1"]),
    ]
    for ax, (title, keys) in zip(axes, panels, strict=True):
        for key in keys:
            ys = [row.get(key) for row in history]
            if any(y is not None for y in ys):
                ax.plot(x, [float("nan") if y is None else y for y in ys], marker=".", label=key)
        ax.set_title(title)
        ax.set_xlabel("epoch (all stages)")
        ax.grid(alpha=0.3)
    lr_ax = axes[2].twinx()
    lr_ax.plot(x, [row.get("lr") for row in history], color="gray", linestyle=":", label="lr")
    lr_ax.set_yscale("log")
    switches = [i + 0.5 for i in range(1, len(history)) if history[i]["stage"] != history[i - 1]["stage"]]
    for ax in axes:
        for s in switches:
            ax.axvline(s, color="black", linestyle="--", alpha=0.4)
        if ax.get_legend_handles_labels()[0]:  # a final fit has no validation curve
            ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)
