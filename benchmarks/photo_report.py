"""A ``feredge evaluate-photos`` run as tables: the terminal, ``results.md`` and ``results.json``.

The same table functions feed the terminal and the Markdown, so the two never disagree. The
confusion matrix of the best row (and of each peer's, when it ran) is drawn when matplotlib is installed.
"""

from __future__ import annotations

import importlib.util
import json
import shlex
from pathlib import Path
from typing import Any

from feredge.benchmarks.peers import PEERS
from feredge.benchmarks.photos import NO_FACE
from feredge.benchmarks.report import Table, neutral_cell, render_markdown, render_text
from feredge.edge.atomic import atomic_write_text

RESULTS_JSON = "results.json"
RESULTS_MD = "results.md"
SHOWN_UNREADABLE = 5  # unreadable photos named in the header; results.json names them all


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def _row_cells(row: dict[str, Any]) -> list[str]:
    return [
        row["model"],
        row["detector"],
        row["framing"],
        "*" if row.get("default") else "",
        f"{row['found']}/{row['photos']}",
        _pct(row["accuracy"]),
        _pct(row.get("balanced_accuracy")),
        f"{row['macro_f1']:.3f}",
        neutral_cell(row["predicted"]["neutral"], row["truth"]["neutral"]) if "neutral" in row["truth"] else "-",
        f"{row['detect_ms']:.1f}",
        f"{row['classify_ms']:.2f}",
    ]


ROW_HEADERS = ["model", "detector", "framing", "default", "found", "acc %", "bal. acc %", "macro-F1", "neutral (truth)"]
ROW_HEADERS += ["detect ms", "classify ms"]


def best_table(results: dict[str, Any]) -> Table:
    """The best framing per model and detector, and the peers' pipelines, most accurate first (``photo_run``
    stores ``best`` in that order)."""
    return ROW_HEADERS, [_row_cells(row) for row in results["best"]]


def grid_table(results: dict[str, Any]) -> Table:
    """Every row of the grid, in run order."""
    return ROW_HEADERS, [_row_cells(row) for row in results["rows"]]


def class_table(results: dict[str, Any]) -> Table:
    """Per-class F1 and predicted counts (of true counts) of the best rows."""
    rows = results["best"]
    labels = list(rows[0]["f1"]) if rows else []
    body = [
        [row["model"], row["detector"], row["framing"]]
        + [
            f"{row['f1'][label]:.2f} ({row['predicted'][label]}/{row['truth'][label]})" if label in row["f1"] else "-"
            for label in labels
        ]
        + [str(row["predicted"].get(NO_FACE, 0))]
        for row in rows
    ]
    return ["model", "detector", "framing", *labels, "no face"], body


def confusion_table(row: dict[str, Any]) -> Table:
    """Counts of true class (rows) against prediction (columns), the "no face" column included."""
    labels = row["labels"]
    body = [
        [label, *(str(n) for n in counts)]
        for label, counts in zip(labels, row["confusion_matrix"], strict=True)
        if label != NO_FACE
    ]
    return ["true \\ predicted", *labels], body


def _confusion_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The most accurate row, and each peer's when it ran: the ones worth a confusion matrix."""
    best = results["best"]
    return best[:1] + [row for row in best[1:] if row["detector"] in PEERS]


def group_table(results: dict[str, Any]) -> Table:
    group = results["groups"] or {}
    sides = list(group["rows"][0]["recall_by_side"]) if group.get("rows") else []
    headers = ["detector", "faces", "recall %", *(f"recall {s} %" for s in sides), "false boxes", "per 40", "ms/frame"]
    body = [
        [
            row["detector"],
            str(row["faces"]),
            _pct(row["recall"]),
            *(_pct(row["recall_by_side"].get(s)) for s in sides),
            str(row["false_boxes"]),
            f"{row['false_per_40']:.2f}",
            f"{row['ms_per_frame']:.1f}",
        ]
        for row in group.get("rows", [])
    ]
    return headers, body


def frame_table(results: dict[str, Any]) -> Table:
    headers = ["pipeline", "framing", "faces", "p50 ms", "p90 ms", "frames/s", "x fer"]
    body = [
        [
            row["pipeline"],
            row["framing"],
            str(row["faces"]),
            f"{row['ms']['p50']:.2f}",
            f"{row['ms']['p90']:.2f}",
            f"{row['fps']:.0f}",
            "-" if row["x_fer"] is None else f"{row['x_fer']:.2f}",
        ]
        for row in results["frames"]
    ]
    return headers, body


def _min_face(value: int | None) -> str:
    return "each detector's own" if value is None else f"{value} px"


def command_line(settings: dict[str, Any]) -> str:
    """The ``feredge evaluate-photos`` command that repeats a run with these settings."""
    parts = ["feredge evaluate-photos", shlex.quote(settings["data"])]
    if settings["models"]:
        parts += ["--models", *map(shlex.quote, settings["models"])]
    parts += ["--detectors", *settings["detectors"]]
    parts += ["--margins", *(f"{m:g}" for m in settings["margins"])]
    parts += ["--offsets", *(f"{o:g}" for o in settings["offsets"])]
    parts += ["--align"] if settings["align"] else []
    parts += [f"--peer {peer}" for peer in settings["peers"]]
    parts += [] if settings["min_face"] is None else [f"--min-face {settings['min_face']}"]
    parts += [f"--max-side {settings['max_side']}", f"--groups {settings['groups']}", f"--frames {settings['frames']}"]
    parts += ["--extra", *map(shlex.quote, settings["extra"])] if settings["extra"] else []
    parts += [f"--threads {settings['threads']}"]
    return " ".join(parts)


def _header(results: dict[str, Any]) -> list[str]:
    photos, load, settings = results["photos"], results["load_average"], results["settings"]
    return [
        f"{results['created']}, feredge {results['feredge']}: `{command_line(settings)}`",
        f"photos: {photos['path']} ({photos['count']}: "
        + ", ".join(f"{k} {v}" for k, v in photos["classes"].items())
        + ")",
        f"threads {settings['threads']}, min face {_min_face(settings['min_face'])}, detection on copies of at most "
        f"{settings['max_side']} px; load average "
        f"{load['start']} -> {load['end']} (timings on a busy machine are upper bounds)",
        *_not_scored(photos),
        *(f"peer {name} skipped: {reason}" for name, reason in results.get("peers_skipped", {}).items()),
        "A photo without a face is a miss: wrong in the accuracy. Largest face scored.",
        *(
            f"model {name}: photometric {c['photometric']}, crop margin {c['crop_margin']:g}, "
            f"framing per detector {c['framing'] or 'none'} (rows marked default serve these)"
            for name, c in results["models"].items()
        ),
    ]


def _not_scored(photos: dict[str, Any]) -> list[str]:
    """The photos no row counts: unreadable files, and per model the classes it does not know."""
    lines = []
    bad = photos["unreadable"]
    if bad:
        more = f"; ... ({len(bad)} in {RESULTS_JSON})" if len(bad) > SHOWN_UNREADABLE else ""
        lines.append(f"unreadable, not scored: {len(bad)} ({'; '.join(bad[:SHOWN_UNREADABLE])}{more})")
    for name, classes in photos["left_out"].items():
        counts = ", ".join(f"{label} {n}" for label, n in classes.items())
        lines.append(f"left out of {name}'s rows (classes it does not know): {sum(classes.values())} ({counts})")
    return lines


def _sections(results: dict[str, Any]) -> list[tuple[str, Table]]:
    sections = [("Best framing per model and detector", best_table(results))]
    sections.append(("Per-class F1 (predicted/true count) of those rows", class_table(results)))
    for row in _confusion_rows(results):
        title = f"Confusion matrix: {row['model']} · {row['detector']} · {row['framing']}"
        sections.append((title, confusion_table(row)))
    if results["groups"] and results["groups"].get("rows"):
        group = results["groups"]
        title = (
            f"Group proxy: {group['canvases']} canvases, {group['faces']} faces from {group['sources']} sources "
            f"(IoU >= 0.3); consensus IoU on clean sources: "
            + ", ".join(f"{k} {v:.2f}" for k, v in group["self_iou"].items())
        )
        sections.append((title, group_table(results)))
    if results["frames"]:
        sections.append(("640x480 frame, one face: detect + crop/align + classify", frame_table(results)))
    sections.append(("Every row", grid_table(results)))
    return sections


def format_text(results: dict[str, Any]) -> str:
    parts = _header(results)
    for title, table in _sections(results)[:-1]:  # the whole grid is in results.md
        parts += ["", title, render_text(table)]
    return "\n".join(parts)


def format_markdown(results: dict[str, Any], figures: list[str]) -> str:
    parts = ["# Whole-photo evaluation", "", *(f"- {line}" for line in _header(results))]
    for title, table in _sections(results):
        parts += ["", f"## {title}", "", render_markdown(table)]
    parts += [f"\n![{name}]({name})" for name in figures]
    return "\n".join(parts) + "\n"


def write_outputs(results: dict[str, Any], out: str | Path) -> list[Path]:
    """``results.json``, confusion matrices (with matplotlib) and ``results.md`` in ``out``."""
    out = Path(out)
    written = [atomic_write_text(out / RESULTS_JSON, json.dumps(results, indent=2) + "\n")]
    figures = _confusion_figures(results, out) if importlib.util.find_spec("matplotlib") else []
    written += figures
    written.append(atomic_write_text(out / RESULTS_MD, format_markdown(results, [f.name for f in figures])))
    return written


def _confusion_figures(results: dict[str, Any], out: Path) -> list[Path]:
    from feredge.plots import plot_confusion_matrix

    paths = []
    for i, row in enumerate(_confusion_rows(results)):
        name = "confusion_best.png" if i == 0 else f"confusion_{row['detector']}.png"
        title = f"{row['model']} · {row['detector']} · {row['framing']}"
        paths.append(plot_confusion_matrix(row, out / name, title=title))
    return paths
