"""The accuracy gate: a converted model against its float model on the same faces, and the report.

Both models are scored exactly like the runtime scores them (contract normalization, flip
averaging when the metadata asks for it), so the numbers are the ones a deployment will see.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from feredge.edge.atomic import atomic_write_text
from feredge.edge.metrics import classification_metrics


@dataclass(frozen=True)
class GateResult:
    float_metrics: dict[str, Any]
    converted_metrics: dict[str, Any]
    top1_agreement: float
    max_abs_prob_diff: float | None  # None when a converted score is NaN
    max_f1_drop: float
    finite: bool = True  # every converted score is a number: NaN scores would make every metric meaningless

    @property
    def f1_drop(self) -> float:
        return self.float_metrics["macro_f1"] - self.converted_metrics["macro_f1"]

    @property
    def passed(self) -> bool:
        return self.finite and self.f1_drop <= self.max_f1_drop

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "finite_scores": self.finite,
            "macro_f1_drop": self.f1_drop,
            "max_f1_drop": self.max_f1_drop,
            "top1_agreement": self.top1_agreement,
            "max_abs_prob_diff": self.max_abs_prob_diff,
            "float": self.float_metrics,
            "converted": self.converted_metrics,
        }


def compare(
    targets: np.ndarray,
    float_scores: np.ndarray,
    converted_scores: np.ndarray,
    labels: tuple[str, ...],
    max_f1_drop: float,
) -> GateResult:
    """Metrics of both models, how often their top-1 agrees, and their largest probability difference."""
    float_top, converted_top = float_scores.argmax(1), converted_scores.argmax(1)
    finite = bool(np.isfinite(converted_scores).all())
    return GateResult(
        float_metrics=classification_metrics(targets, float_top, labels),
        converted_metrics=classification_metrics(targets, converted_top, labels),
        top1_agreement=float(np.mean(float_top == converted_top)),
        max_abs_prob_diff=float(np.abs(float_scores - converted_scores).max()) if finite else None,
        max_f1_drop=max_f1_drop,
        finite=finite,
    )


def _difference(value: float | None) -> str:
    return "none: the converted scores are NaN" if value is None else f"{value:.5f}"


def _kib(n: int) -> str:
    return f"{n / 1024:.1f} KiB"


def report_markdown(report: dict[str, Any]) -> str:
    """Markdown: status, size, time, then float vs converted accuracy, macro-F1 and per-class F1."""
    name, fl, cv = report["name"], report["float"], report["converted"]
    lines = [
        f"## {name}: {report['status']}",
        "",
        f"- artefact: `{report['artefact']}`",
        f"- size: {_kib(report['size_bytes'])}, {report['size_ratio']:.3f}x the float model's "
        f"{_kib(report['float_weight_bytes'])} ({report['size_ratio_basis']})",
        f"- time: converted in {report['convert_seconds']:.1f} s, checked in {report['check_seconds']:.1f} s",
        f"- check set: {cv['samples']} faces from {report['check_data']}; "
        f"calibration faces: {report['metadata']['calibration_size'] or 'none'}",
        f"- top-1 agreement with the float model: {report['top1_agreement']:.4f}; "
        f"max |probability difference|: {_difference(report['max_abs_prob_diff'])}",
        f"- macro-F1 drop: {report['macro_f1_drop']:+.4f} (limit {report['max_f1_drop']:+.4f})",
        _calibration_line(report.get("calibration")),
        "",
        f"| metric | float | {name} | change |",
        "|---|---:|---:|---:|",
        f"| accuracy | {fl['accuracy']:.4f} | {cv['accuracy']:.4f} | {cv['accuracy'] - fl['accuracy']:+.4f} |",
        f"| macro-F1 | {fl['macro_f1']:.4f} | {cv['macro_f1']:.4f} | {cv['macro_f1'] - fl['macro_f1']:+.4f} |",
    ]
    for label, row in fl["per_class"].items():
        f_float, f_conv = row["f1"], cv["per_class"][label]["f1"]
        lines.append(f"| F1 {label} | {f_float:.4f} | {f_conv:.4f} | {f_conv - f_float:+.4f} |")
    return "\n".join(lines) + "\n"


def _calibration_line(calibration: dict[str, float] | None) -> str:
    if not calibration:
        return "- calibration: none (temperature 1)"
    how = "given, not fitted here" if calibration.get("given") else "after: 2-fold cross-fitted on the check set"
    return (
        f"- calibration: temperature {calibration['temperature']:.3f}; ECE (15 bins) "
        f"{calibration['ece_before']:.4f} -> {calibration['ece_after']:.4f}, NLL {calibration['nll_before']:.4f} -> "
        f"{calibration['nll_after']:.4f} ({how})"
    )


def write_report(report: dict[str, Any], stem: Path) -> tuple[Path, Path]:
    """``<stem>.json`` and ``<stem>.md`` beside the artefact, each written atomically."""
    json_path, md_path = stem.with_name(stem.name + ".json"), stem.with_name(stem.name + ".md")
    atomic_write_text(json_path, json.dumps(report, indent=2) + "\n")
    atomic_write_text(md_path, report_markdown(report))
    return json_path, md_path
