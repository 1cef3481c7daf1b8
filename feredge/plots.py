"""Figures shared by training, evaluation and the benchmarks (matplotlib, imported on first use).

They sit beside the CLI rather than in ``edge/`` because the runtime install has no matplotlib and
draws nothing; train/ and benchmarks/ add their own figures on top of these helpers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from feredge.edge.atomic import atomic_path


def pyplot() -> Any:
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


def save_figure(fig: Any, path: str | Path) -> Path:
    """Write ``fig`` as PNG atomically and close it, so a long run does not accumulate figures."""
    plt = pyplot()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return Path(path)


# The label of a face below ``min_confidence`` (``feredge.edge.recognizer.UNCERTAIN``) is drawn pale.
_UNCERTAIN_RGB = (0.88, 0.88, 0.88)
MAX_TIMELINE_PANELS = 6


def plot_timeline(rows: Any, path: str | Path, title: str | None = None) -> Path:
    """The emotion timeline of a video (``feredge.edge.timeline`` rows, or their DataFrame) as PNG.

    One panel per track, longest tracks first (at most ``MAX_TIMELINE_PANELS``): the smoothed scores
    over time as stacked areas, broken where the track was not seen, and under them a strip of the
    label shown on each frame. Colours are those of the annotated video.
    """
    from feredge.edge.draw import label_color
    from feredge.edge.recognizer import UNCERTAIN

    plt = pyplot()
    records = rows.to_dict("records") if hasattr(rows, "to_dict") else list(rows)
    labels = [key.removeprefix("smoothed_") for key in (records[0] if records else {}) if key.startswith("smoothed_")]

    def rgb(label: str) -> tuple[float, float, float]:
        if label == UNCERTAIN:
            return _UNCERTAIN_RGB
        b, g, r = label_color(label)
        return r / 255, g / 255, b / 255

    tracks: dict[int, list[dict[str, Any]]] = {}
    for record in records:
        tracks.setdefault(int(record["track_id"]), []).append(record)
    shown = sorted(tracks, key=lambda track: (-len(tracks[track]), track))[:MAX_TIMELINE_PANELS]
    times = sorted({float(record["time_s"]) for record in records})
    step = float(np.median(np.diff(times))) if len(times) > 1 else 1.0
    end = (times[-1] + step) if times else 1.0
    panels = max(1, len(shown))
    fig = plt.figure(figsize=(10, 0.8 + 2.3 * panels))
    # per track: the scores, the label strip, and a gap for the next track's title
    grid = fig.add_gridspec(3 * panels - 1, 1, height_ratios=[5, 1, 1.6] * (panels - 1) + [5, 1], hspace=0.1)
    if not shown:
        ax = fig.add_subplot(grid[0])
        ax.text(0.5, 0.5, "no face in the video", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
    for number, track in enumerate(shown):
        faces = tracks[track]
        t = np.array([float(face["time_s"]) for face in faces])
        ax = fig.add_subplot(grid[3 * number])
        strip = fig.add_subplot(grid[3 * number + 1], sharex=ax)
        # Split where the track was not seen for more than a frame, so areas do not bridge the gap.
        breaks = np.flatnonzero(np.diff(t) > 1.5 * step) + 1
        for part in np.split(np.arange(len(faces)), breaks):
            if len(part) == 0:
                continue
            x = np.append(t[part], t[part[-1]] + step)
            ys = [[faces[i][f"smoothed_{label}"] for i in part] for label in labels]
            ax.stackplot(x, [np.append(y, y[-1]) for y in ys], colors=[rgb(label) for label in labels], step="post")
            # one bar per run of the same label
            runs = [0, *(j for j in range(1, len(part)) if faces[part[j]]["label"] != faces[part[j - 1]]["label"])]
            for first, stop in zip(runs, [*runs[1:], len(part)], strict=True):
                width = x[stop] - x[first]
                strip.broken_barh([(x[first], width)], (0, 1), color=rgb(faces[part[first]]["label"]), lw=0)
        counts: dict[str, int] = {}
        for face in faces:
            counts[face["label"]] = counts.get(face["label"], 0) + 1
        dominant = max(counts, key=lambda label: counts[label])
        share, seen = counts[dominant] / len(faces), len(faces) * step
        ax.set_title(f"track {track}: {dominant} ({share:.0%} of the {seen:.1f} s it was seen)", loc="left", fontsize=9)
        ax.set_xlim(0, end)
        ax.set_ylim(0, 1)
        ax.set_ylabel("score", fontsize=8)
        ax.tick_params(labelbottom=False, labelsize=8)
        strip.set_ylim(0, 1)
        strip.set_yticks([])
        strip.tick_params(labelsize=8, labelbottom=number == len(shown) - 1)
    if shown:
        strip.set_xlabel("time (s)", fontsize=9)
    hidden = len(tracks) - len(shown)
    handles = [plt.Rectangle((0, 0), 1, 1, color=rgb(label)) for label in [*labels, UNCERTAIN]]
    fig.legend(handles, [*labels, UNCERTAIN], loc="upper center", ncol=len(labels) + 1, fontsize=8, frameon=False)
    heading = title or "Emotions over time per tracked face (areas: smoothed scores; strip: label shown)"
    if hidden > 0:
        heading += f" · {hidden} shorter track{'s' if hidden > 1 else ''} not shown"
    fig.suptitle(heading, fontsize=10, y=1 - 0.25 / fig.get_figheight())
    height = fig.get_figheight()
    fig.subplots_adjust(top=1 - 0.75 / height, bottom=0.45 / height, left=0.07, right=0.98)
    return save_figure(fig, path)
