"""The models a benchmark compares: files given with ``--models`` and peers, all opened one way.

A ``Subject`` is plain, JSON-ready data, so the memory benchmark can hand it to a fresh process and
open the same model there.
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass
from pathlib import Path

from feredge.convert.formats import FORMATS, variants
from feredge.edge.metadata import ModelMetadata
from feredge.edge.model import EmotionModel, load_model

FEREDGE = "feredge"


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


def subjects_from_paths(paths: list[str], labels: str | None = None) -> list[Subject]:
    """One subject per model file, named by file stem (by parent/stem where two stems collide)."""
    stems = [Path(p).stem for p in paths]
    subjects = []
    for path, stem in zip(paths, stems, strict=True):
        name = f"{Path(path).parent.name}/{stem}" if stems.count(stem) > 1 else stem
        runtime = "onnxruntime" if Path(path).suffix.lower() == ".onnx" else None
        subjects.append(Subject(name=name, path=str(path), labels=labels, runtime_module=runtime))
    return subjects


def open_model(subject: Subject, threads: int) -> EmotionModel:
    """Load ``subject`` with ``threads`` interpreter threads; raises FeredgeError subclasses."""
    if subject.kind == FEREDGE:
        return load_model(subject.path, labels=subject.labels, threads=threads)
    from feredge.benchmarks.peers import open_peer

    return open_peer(subject, threads)


def format_label(path: str | Path, metadata: ModelMetadata) -> str:
    """The export format, from the file name's suffix (``_int8.tflite``), else from the metadata.

    Both come from convert's one table of formats; a format it does not know is shown as written.
    """
    name = Path(path).name.lower()
    for fmt in FORMATS.values():
        for variant in variants(fmt, qat=True):
            if name.endswith(fmt.tag + variant + fmt.extension):
                return fmt.display_name(variant)
    by_metadata = {fmt.metadata_format: fmt.name for fmt in FORMATS.values()}
    return by_metadata.get(metadata.format, metadata.format)


def package_version(package: str) -> str:
    """``package 1.2.3`` for an installed distribution (``package`` alone when it has no metadata)."""
    try:
        return f"{package} {importlib.metadata.version(package)}"
    except importlib.metadata.PackageNotFoundError:
        return package
