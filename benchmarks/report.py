"""A benchmark run as text: tables for the terminal, ``results.md`` and ``results.json``.

The same rows feed the terminal and the Markdown tables, so the two never disagree.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from feredge.benchmarks.frames import frames_markdown
from feredge.benchmarks.latency import BATCH_SIZES, STAGES
from feredge.benchmarks.plots import PARETO, THREADS, confusion_name, write_plots
from feredge.edge.atomic import atomic_write_text

RESULTS_JSON = "results.json"
RESULTS_MD = "results.md"

Table = tuple[list[str], list[list[str]]]
FRAMES_NOTE = (
    "The default model on the one-face 640x480 frame through EmotionRecognizer, decoded frame to labels, at "
    "each detector's default detect size, at full resolution and at 320 px; fer is fer's own pipeline (its "
    "Haar cascade on the full gray frame, its crop and its TFLite model), timed in the same run. frames/s is "
    "1000 / the median ms."
)
ACCURACY_NOTE = (
    "Each model scores as it serves: its own flip averaging, prior correction (tau) and temperature (T). "
    "bal. acc is the mean recall over the true classes; neutral (truth) counts neutral answers against true "
    "neutrals. On FER+ data the truth is the annotators' majority (the paper's rule) and CE votes is the mean "
    "cross-entropy in nats against their vote distribution; a fer2013.csv with FER+ votes is also scored on "
    "its own FER2013 labels (the FER2013 columns, all of the split's faces)."
)


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def speed_table(results: dict[str, Any]) -> Table:
    """One row per model and thread count: size, init, first run, steady state, throughput, memory."""
    headers = [
        "model",
        "format",
        "status",
        "size MB",
        "threads",
        "load ms",
        "first ms",
        "M MACs",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        *(f"b{size} faces/s" for size in BATCH_SIZES),
        "peak RSS MB",
    ]
    rows = []
    for model in results["models"]:
        size = None if model["size_bytes"] is None else model["size_bytes"] / 2**20
        macs = None if model.get("macs") is None else model["macs"] / 1e6
        head = [model["name"], model["format"] or "-", model["status"], _num(size, 2)]
        for row in model["threads"]:
            steady = row["steady_ms"]
            rows.append(
                [
                    *head,
                    str(row["threads"]),
                    _num(row["load_ms"]),
                    _num(row["first_ms"], 2),
                    _num(macs),
                    *(_num(steady[p], 2) for p in ("p50", "p90", "p99")),
                    *(_num(row["throughput"][str(size)], 0) for size in BATCH_SIZES),
                    _num(row["memory"]["peak_rss_mb"], 0),
                ]
            )
        if not model["threads"]:
            rows.append([*head, *["-"] * (len(headers) - len(head))])
    return headers, rows


def pipeline_table(results: dict[str, Any]) -> Table:
    """Full-pipeline latency per 640x480 frame: stage and total means (FPS from the mean), total p50."""
    headers = ["model", "threads", "faces", *(f"{stage} ms" for stage in STAGES), "total ms", "p50 ms", "FPS"]
    rows = []
    for model in results["models"]:
        for row in model["threads"]:
            for frame in row["pipeline"].values():
                faces = f"{frame['faces_found']}/{frame['faces']}"
                stages = [_num(frame["stages_ms"][stage], 2) for stage in STAGES]
                total = frame["total_ms"]
                rows.append(
                    [
                        model["name"],
                        str(row["threads"]),
                        faces,
                        *stages,
                        _num(total["mean"], 2),
                        _num(total["p50"], 2),
                        _num(frame["fps"]),
                    ]
                )
    return headers, rows


def neutral_cell(answers: dict[str, Any] | None, truth: dict[str, Any] | None) -> str:
    """``answers (truth)`` for neutral: falling back to neutral on real faces is the known failure."""
    if answers is None or truth is None:
        return "-"
    return f"{answers} ({truth})"


def _neutral(metrics: dict[str, Any]) -> str:
    row = metrics["per_class"].get("neutral")
    return "-" if row is None else neutral_cell(row.get("answers"), row["support"])


def accuracy_table(results: dict[str, Any]) -> Table:
    """Accuracy, balanced accuracy, macro-F1, neutral answers (true neutrals), the cross-entropy against the
    annotators' votes (FER+ data), the same split's FER2013-label figures (a ``fer2013.csv`` with FER+
    votes), calibration, and per-class F1 (over every label any model has, in first-seen order)."""
    scored = [m for m in results["models"] if m["accuracy"]]
    labels = list(dict.fromkeys(label for m in scored for label in m["accuracy"]["labels"]))
    votes = any("vote_cross_entropy" in m["accuracy"] for m in scored)
    original = any("fer2013_labels" in m["accuracy"] for m in scored)
    headers = ["model", "format", "samples", "accuracy", "bal. acc", "macro-F1", "neutral (truth)"]
    headers += ["CE votes"] if votes else []
    headers += ["FER2013 samples", "FER2013 acc", "FER2013 bal. acc", "FER2013 neutral (truth)"] if original else []
    headers += ["ECE", "ECE T=1", "T", "tau", *(f"F1 {label}" for label in labels)]
    rows = []
    for model in scored:
        acc = model["accuracy"]
        row = [
            model["name"],
            model["format"],
            str(acc["samples"]),
            _num(acc["accuracy"], 3),
            _num(acc.get("balanced_accuracy"), 3),
            _num(acc["macro_f1"], 3),
            _neutral(acc),
        ]
        row += [_num(acc.get("vote_cross_entropy"), 3)] if votes else []
        if original:
            fer = acc.get("fer2013_labels")
            row += (
                [str(fer["samples"]), _num(fer["accuracy"], 3), _num(fer["balanced_accuracy"], 3), _neutral(fer)]
                if fer
                else ["-"] * 4
            )
        row += [
            _num(acc.get("ece"), 3),
            _num(acc.get("ece_uncalibrated"), 3),
            _num(acc.get("temperature"), 2),
            _num(acc.get("prior_tau"), 2),
        ]
        row += [_num(acc["per_class"][label]["f1"], 3) if label in acc["per_class"] else "-" for label in labels]
        rows.append(row)
    return headers, rows


def photo_table(results: dict[str, Any]) -> Table:
    """Whole photos through each model's pipeline: found-rate, accuracy, balanced accuracy, macro-F1, neutral
    answers against true neutrals and the most frequent answer (real photos read as neutral is the
    known failure), and ms per photo."""
    headers = ["model", "pipeline", "photos", "found", "accuracy", "bal. acc", "macro-F1", "neutral (truth)"]
    headers += ["top answer", "ms p50", "ms p90"]
    rows = []
    for model in results["models"]:
        photos = model.get("photos")
        if not photos:
            continue
        answers = {label: n for label, n in photos["predicted"].items() if n}
        top = max(answers, key=answers.get) if answers else "-"
        neutral = "neutral" in photos["truth"]
        rows.append(
            [
                model["name"],
                photos["pipeline"],
                str(photos["photos"]),
                _num(photos["found_rate"], 3),
                _num(photos["accuracy"], 3),
                _num(photos.get("balanced_accuracy"), 3),
                _num(photos["macro_f1"], 3),
                neutral_cell(photos["predicted"]["neutral"], photos["truth"]["neutral"]) if neutral else "-",
                f"{top} ({answers.get(top, 0)}, truth {photos['truth'].get(top, 0)})",
                _num(photos["ms"]["p50"], 1),
                _num(photos["ms"]["p90"], 1),
            ]
        )
    return headers, rows


def render_text(table: Table) -> str:
    """Columns padded to their widest cell; numbers right-aligned."""
    headers, rows = table
    widths = [max(len(cell) for cell in column) for column in zip(headers, *rows, strict=True)]
    numeric = [all(_is_number(row[i]) for row in rows) and bool(rows) for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if n else c.ljust(w) for c, w, n in zip(cells, widths, numeric, strict=True))

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(row) for row in rows)]).rstrip()


def render_markdown(table: Table) -> str:
    headers, rows = table
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(" --- " for _ in headers) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _is_number(cell: str) -> bool:
    return cell == "-" or cell.replace(",", "").replace(".", "", 1).lstrip("-").isdigit()


def machine_line(results: dict[str, Any]) -> str:
    m = results["machine"]
    board = f"{m['board']}, " if m["board"] else ""
    load = m["load_average"]
    return (
        f"{board}{m['cpu']} ({m['cores']} cores, {m['arch']}, {m['memory_mb']:,} MB), {m['os']}; "
        f"{m['python']}; {', '.join(m['runtimes']) or 'no runtime'}; numpy {m['numpy']}, opencv {m['opencv']}; "
        f"load average {load['start']} at start, {load['end']} at end"
    )


def settings_line(results: dict[str, Any]) -> str:
    s = results["settings"]
    data = results["data"]
    scored = "none (no accuracy)"
    if data:
        votes = f" + {data['ferplus_votes']}" if data.get("ferplus_votes") else ""
        layout = f" ({data['layout']})" if data.get("layout") else ""
        scored = f"{data['samples']:,} images in {data['path']}{votes}{layout}"
    photos = results.get("photos")
    whole = f"; photos: {photos['photos']:,} in {photos['path']}" if photos else ""
    return (
        f"threads {', '.join(map(str, s['threads']))}; {s['runs']} timed runs after {s['warmup']} warm-up; "
        f"{s['frames']} frames per scene, detector {s['detector']}; data: {scored}{whole}"
    )


def notes(results: dict[str, Any]) -> list[str]:
    """Why a model failed or was skipped, and what was measured differently."""
    lines = []
    for model in results["models"]:
        if model["status"] != "ok":
            lines.append(f"{model['name']}: {model['status']}: {model['error']}")
        if model["note"]:
            lines.append(f"{model['name']}: {model['note']}")
        if model.get("accuracy_skipped"):
            lines.append(f"{model['name']}: accuracy skipped: {model['accuracy_skipped']}")
        if model.get("photos_skipped"):
            lines.append(f"{model['name']}: photos skipped: {model['photos_skipped']}")
        if model.get("photos") and model["photos"]["left_out"]:
            lines.append(f"{model['name']}: {model['photos']['left_out']} photos of classes it does not know left out")
        if model.get("provider"):
            lines.append(f"{model['name']}: {model['backend']} ran it on {model['provider']}")
    return lines


def format_text(results: dict[str, Any]) -> str:
    """The terminal summary: machine, speed, pipeline and accuracy tables, notes."""
    parts = [
        f"machine: {machine_line(results)}",
        f"settings: {settings_line(results)}",
        "",
        render_text(speed_table(results)),
        "",
        render_text(pipeline_table(results)),
    ]
    for comparison in results.get("frames", []):
        parts += ["", *frames_markdown(comparison)]
    if any(m["accuracy"] for m in results["models"]):
        parts += ["", render_text(accuracy_table(results))]
    if any(m.get("photos") for m in results["models"]):
        parts += ["", render_text(photo_table(results))]
    if notes(results):
        parts += ["", *(f"- {line}" for line in notes(results))]
    return "\n".join(parts)


def format_markdown(results: dict[str, Any], figures: Sequence[str]) -> str:
    """``results.md``: the tables and the figures in ``figures`` (file names beside it)."""
    parts = [
        "# feredge bench results",
        "",
        f"Measured {results['created']} with feredge {results['feredge']}.",
        "",
        f"- **Machine:** {machine_line(results)}",
        f"- **Settings:** {settings_line(results)}",
        "",
        "## Speed per face (model only)",
        "",
        "`load` is model init, `first` the first invoke, p50/p90/p99 the steady state after warm-up; "
        "throughput at batch 1, 8 and 32; peak RSS of a fresh process that loads and runs the model.",
        "",
        render_markdown(speed_table(results)),
        "",
        "## Full pipeline on a 640x480 frame",
        "",
        "Stage and total times are means per frame (FPS is 1000 / mean), p50 the median total; faces is found/drawn.",
        "",
        render_markdown(pipeline_table(results)),
        "",
    ]
    if results.get("frames"):
        parts += ["## Whole frames: detect sizes and fer's own pipeline", "", FRAMES_NOTE, ""]
        for comparison in results["frames"]:
            parts += [*frames_markdown(comparison), ""]
    if THREADS in figures:
        parts += [f"![latency by thread count]({THREADS})", ""]
    if any(m["accuracy"] for m in results["models"]):
        parts += ["## Accuracy", "", ACCURACY_NOTE, "", render_markdown(accuracy_table(results)), ""]
    if PARETO in figures:
        parts += [f"![latency vs macro-F1]({PARETO})", ""]
    if any(m.get("photos") for m in results["models"]):
        parts += [
            "## Whole photos",
            "",
            "Each model's whole pipeline as a user runs it (feredge: the detector above and the model's framing "
            "for it; fer and facex: each its own Haar cascade and crop) on every photo; the largest face is scored "
            "and a photo with no face is a miss (wrong in accuracy and in its class's recall). ms is per photo, "
            "decoded image to label.",
            "",
            render_markdown(photo_table(results)),
            "",
        ]
    confusions = [(m["name"], confusion_name(m["name"])) for m in results["models"]]
    confusions = [(name, file) for name, file in confusions if file in figures]
    if confusions:
        parts += ["### Confusion matrices", "", *(f"![{name}]({file})" for name, file in confusions), ""]
    if notes(results):
        parts += ["## Notes", "", *(f"- {line}" for line in notes(results)), ""]
    return "\n".join(parts)


def write_outputs(results: dict[str, Any], out: str | Path) -> list[Path]:
    """``results.json``, the figures and ``results.md`` in ``out``; returns every file written."""
    out = Path(out)
    written = [atomic_write_text(out / RESULTS_JSON, json.dumps(results, indent=2) + "\n")]
    figures = write_plots(results, out)
    markdown = format_markdown(results, [f.name for f in figures])
    written += [*figures, atomic_write_text(out / RESULTS_MD, markdown)]
    return written
