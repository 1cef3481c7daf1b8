"""The models a benchmark compares: files given with ``--models`` and peers, all opened one way.

A ``Subject`` is plain, JSON-ready data, so the memory benchmark can hand it to a fresh process and
open the same model there.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from feredge.edge.artifacts import display_names
from feredge.edge.model import EmotionModel, load_model

FEREDGE = "feredge"
CROP_BATCH = 64  # crops per predict_crops call: 1,000 of a peer's 200x200x3 float inputs would take 0.5 GB


@dataclass(frozen=True)
class Subject:
    """One model to benchmark.

    ``kind`` is ``feredge`` for a feredge ``.tflite`` / ``.onnx`` file, or a peer kind from
    ``peers.py``. ``runtime_module`` is imported before timing, so that the first model's load time
    is not the import's (TFLite's interpreter is always imported). ``threads_fixed`` marks a runtime
    whose thread pool is set once per process: it is measured at the first thread count only.
    ``skip_reason`` marks a peer that cannot run here.
    """

    name: str
    path: str
    kind: str = FEREDGE
    labels: str | None = None
    runtime_module: str | None = None
    threads_fixed: bool = False
    skip_reason: str | None = None


class CropFedModel(EmotionModel):
    """A peer's model that turns face crops into its input its own way (``preprocess``), not by feredge's
    contract: face data is loaded at ``crop_size`` for it and scored through ``predict_crops``."""

    crop_size = 48


def predict_crops_batched(model: EmotionModel, crops: Sequence[np.ndarray]) -> np.ndarray:
    """``model.predict_crops`` over ``crops``, ``CROP_BATCH`` at a time, so memory is bounded by the batch."""
    if not crops:
        return model.predict_crops([])
    return np.concatenate(
        [model.predict_crops(list(crops[start : start + CROP_BATCH])) for start in range(0, len(crops), CROP_BATCH)]
    )


def subjects_from_paths(paths: list[str], labels: str | None = None) -> list[Subject]:
    """One subject per model file, named by ``display_names`` (the stem, unless stems clash)."""
    subjects = []
    for path, name in zip(paths, display_names(paths), strict=True):
        runtime = "onnxruntime" if Path(path).suffix.lower() == ".onnx" else None
        subjects.append(Subject(name=name, path=str(path), labels=labels, runtime_module=runtime))
    return subjects


def open_model(subject: Subject, threads: int) -> EmotionModel:
    """Load ``subject`` with ``threads`` interpreter threads; raises FeredgeError subclasses."""
    if subject.kind == FEREDGE:
        return load_model(subject.path, labels=subject.labels, threads=threads)
    from feredge.benchmarks.peers import open_peer

    return open_peer(subject, threads)


def package_version(package: str) -> str:
    """``package 1.2.3`` for an installed distribution (``package`` alone when it has no metadata)."""
    try:
        return f"{package} {importlib.metadata.version(package)}"
    except importlib.metadata.PackageNotFoundError:
        return package
