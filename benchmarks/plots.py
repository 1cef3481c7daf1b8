"""Figures of a benchmark run: the latency/macro-F1 trade-off, latency by threads, confusion matrices."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from feredge.plots import plot_confusion_matrix, pyplot, save_figure

PARETO = "pareto.png"
THREADS = "latency_threads.png"


def slug(name: str) -> str:
    """A file-name-safe form of a model name (``fer (tflite)`` -> ``fer-tflite``)."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "model"


def confusion_name(model_name: str) -> str:
    return f"confusion_{slug(model_name)}.png"


def write_plots(results: dict[str, Any], out: Path) -> list[Path]:
    """Every figure the results allow (no accuracy, no Pareto view); returns the files written."""
    measured = [m for m in results["models"] if m["threads"]]
    scored = [m for m in measured if m["accuracy"]]
    written = []
    if scored:
        written.append(plot_pareto(scored, out / PARETO))
    if measured:
        written.append(plot_threads(measured, out / THREADS))
    for model in results["models"]:
        if model["accuracy"]:
            title = f"{model['name']} ({model['format']})"
            written.append(plot_confusion_matrix(model["accuracy"], out / confusion_name(model["name"]), title))
    return written


def plot_pareto(models: list[dict[str, Any]], path: Path) -> Path:
    """Median per-face latency against macro-F1, one marker per thread count; the front joins the
    models that no other model beats on both (at their fastest thread count)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    best = []
    for model in models:
        f1 = model["accuracy"]["macro_f1"]
        points = [(row["steady_ms"]["p50"], row["threads"]) for row in model["threads"]]
        line = ax.plot([p for p, _ in points], [f1] * len(points), "-", alpha=0.5, label=model["name"])[0]
        for latency, threads in points:
            ax.scatter(latency, f1, color=line.get_color(), marker=f"${threads}$", s=90)
        best.append((min(p for p, _ in points), f1))
    front, top = [], -1.0
    for latency, f1 in sorted(best, key=lambda p: (p[0], -p[1])):
        if f1 > top:
            front.append((latency, f1))
            top = f1
    ax.step([p[0] for p in front], [p[1] for p in front], where="post", color="gray", linestyle="--", linewidth=1)
    ax.set_xscale("log")
    ax.set_xlabel("latency per face, p50 (ms, log scale; marker = threads)")
    ax.set_ylabel("macro-F1")
    ax.set_title("Latency vs macro-F1 (up and to the left is better)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_threads(models: list[dict[str, Any]], path: Path) -> Path:
    """Per-face p50 latency and one-face frame latency against the thread count, one line per model."""
    plt = pyplot()
    fig, (face_ax, frame_ax) = plt.subplots(1, 2, figsize=(10, 4))
    for model in models:
        rows = model["threads"]
        threads = [row["threads"] for row in rows]
        face_ax.plot(threads, [row["steady_ms"]["p50"] for row in rows], "o-", label=model["name"])
        frame_ax.plot(threads, [row["pipeline"]["1"]["total_ms"]["p50"] for row in rows], "o-", label=model["name"])
    for ax, title in ((face_ax, "per face (model only)"), (frame_ax, "per 640x480 frame, 1 face (full pipeline)")):
        ax.set_title(title)
        ax.set_xlabel("threads")
        ax.set_ylabel("p50 latency (ms, log scale)")
        ax.set_yscale("log")
        ax.set_xticks(sorted({row["threads"] for m in models for row in m["threads"]}))
        ax.grid(True, alpha=0.3)
    face_ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)
