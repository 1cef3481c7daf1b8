"""One benchmark run: every model at every thread count, side by side in one JSON-ready record.

Each model is measured in turn; whatever fails (a corrupt file, a backend error) is recorded as that
model's status and the run goes on with the next model. A data set that shares no class with a model
only skips that model's accuracy (``accuracy_skipped`` says why); its speed is still measured.
"""

from __future__ import annotations

import contextlib
import datetime
import importlib
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from feredge import __version__
from feredge.benchmarks.accuracy import AccuracyData, model_accuracy
from feredge.benchmarks.frames import draw_face, frame_comparison, scene
from feredge.benchmarks.latency import face_latency, opencv_threads, pipeline_latency, throughput
from feredge.benchmarks.machine import load_average, machine_info
from feredge.benchmarks.memory import measure
from feredge.benchmarks.models import Subject, open_model, package_version
from feredge.benchmarks.photo_bench import photo_pipeline, score_photos
from feredge.benchmarks.photos import Photo, class_counts
from feredge.edge.artifacts import format_label
from feredge.edge.detectors import DEFAULT_DETECTOR, Detector, make_detector
from feredge.edge.errors import DataError
from feredge.edge.model import EmotionModel
from feredge.edge.options import RecognizerOptions
from feredge.edge.recognizer import EmotionRecognizer
from feredge.edge.tflite_runner import interpreter_class

log = logging.getLogger(__name__)

SCENE_FACES = (1, 4)
PIPELINE_WARMUP = 2


@dataclass(frozen=True)
class Settings:
    """How much to measure; recorded with the results so a run can be repeated."""

    threads: tuple[int, ...] = (1,)
    runs: int = 100
    warmup: int = 10
    frames: int = 30
    detector: str = DEFAULT_DETECTOR
    detector_model: str | None = None


@dataclass(frozen=True)
class PhotoSet:
    """Class-folder whole photos (``photos.load_photos``) and where they came from."""

    path: str
    photos: list[Photo]

    def summary(self) -> dict[str, Any]:
        return {"path": self.path, "photos": len(self.photos), "classes": class_counts(self.photos)}


@dataclass
class _Context:
    settings: Settings
    detector: Detector
    scenes: dict[int, np.ndarray]
    data: AccuracyData | None
    photos: list[Photo] | None


def run_benchmark(
    subjects: list[Subject],
    settings: Settings,
    data: AccuracyData | None = None,
    photos: PhotoSet | None = None,
) -> dict[str, Any]:
    """Measure every subject; returns the record that ``report.write_outputs`` renders.

    ``data`` scores cropped faces; ``photos`` runs each subject's whole pipeline on real photos."""
    started = load_average()
    _import_runtimes(subjects)
    detector = make_detector(settings.detector, settings.detector_model)
    scenes = {n: scene(n)[0] for n in SCENE_FACES}
    context = _Context(settings, detector, scenes, data, photos.photos if photos is not None else None)
    models = [_bench_subject(subject, context) for subject in subjects]
    machine = machine_info(m["backend"] for m in models if m["backend"])
    machine["load_average"] = {"start": started, "end": load_average()}
    return {
        "feredge": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine,
        "settings": asdict(settings),
        "data": data.summary() if data is not None else None,
        "photos": photos.summary() if photos is not None else None,
        "models": models,
        "frames": [frame_comparison(None, threads, settings.frames) for threads in settings.threads],
    }


def _import_runtimes(subjects: list[Subject]) -> None:
    """Import the runtimes up front so the first model's load time is not the import's."""
    interpreter_class()
    for subject in subjects:
        if subject.runtime_module and not subject.skip_reason:
            with contextlib.suppress(ImportError):  # then the model fails to load, with the install hint
                importlib.import_module(subject.runtime_module)


def _bench_subject(subject: Subject, context: _Context) -> dict[str, Any]:
    path = Path(subject.path)
    entry: dict[str, Any] = {
        "name": subject.name,
        "path": subject.path,
        "kind": subject.kind,
        "status": "ok",
        "error": None,
        "size_bytes": path.stat().st_size if path.is_file() else None,
        "format": None,
        "backend": None,
        "provider": None,
        "runtime": None,
        "model": None,
        "threads": [],
        "accuracy": None,
        "accuracy_skipped": None,
        "photos": None,
        "photos_skipped": None,
        "note": None,
    }
    if subject.skip_reason:
        log.info("%s: skipped (%s)", subject.name, subject.skip_reason)
        entry.update(status="skipped", error=subject.skip_reason)
        return entry
    counts = context.settings.threads
    if subject.threads_fixed and len(counts) > 1:
        counts = counts[:1]
        entry["note"] = f"measured at {counts[0]} thread(s) only: its runtime sets its thread pool once per process"
    try:
        for threads in counts:
            log.info("%s: %d thread(s)", subject.name, threads)
            entry["threads"].append(_bench_threads(subject, threads, context, entry))
    except Exception as exc:  # any backend's failure, whatever its type, must not end the whole run
        log.warning("%s: failed: %s", subject.name, exc)
        entry.update(status="failed", error=f"{type(exc).__name__}: {exc}")
    return entry


def _bench_threads(subject: Subject, threads: int, context: _Context, entry: dict[str, Any]) -> dict[str, Any]:
    settings = context.settings
    start = time.perf_counter()
    model = open_model(subject, threads)
    load_ms = (time.perf_counter() - start) * 1000.0
    if entry["model"] is None:
        _describe(entry, model)
    face = model.preprocess([draw_face(160)])
    row: dict[str, Any] = {"threads": threads, "load_ms": load_ms}
    row.update(face_latency(model, face, settings.runs, settings.warmup))
    row["throughput"] = throughput(model, face, settings.runs)
    recognizer = EmotionRecognizer.create_from_options(RecognizerOptions(model, context.detector))
    row["pipeline"] = {
        str(faces): {"faces": faces, **pipeline_latency(recognizer, frame, settings.frames, PIPELINE_WARMUP, threads)}
        for faces, frame in context.scenes.items()
    }
    if context.data is not None and entry["accuracy"] is None and entry["accuracy_skipped"] is None:
        try:
            entry["accuracy"] = model_accuracy(model, context.data)
        except DataError as exc:
            log.warning("%s: accuracy skipped: %s", subject.name, exc)
            entry["accuracy_skipped"] = str(exc)
    if context.photos is not None and entry["photos"] is None and entry["photos_skipped"] is None:
        _bench_photos(subject, model, threads, context, entry)
    row["memory"] = measure(subject, threads)
    return row


def _bench_photos(
    subject: Subject, model: EmotionModel, threads: int, context: _Context, entry: dict[str, Any]
) -> None:
    """The whole pipeline on the real photos, once per model (at its first thread count).

    Whatever goes wrong here (a photo the detector chokes on, fer's cascade missing) skips only this
    part: the latencies already measured must not be lost to an extra."""
    log.info("%s: %d photos, whole pipeline", subject.name, len(context.photos))
    try:
        with opencv_threads(threads):
            name, pipeline = photo_pipeline(subject, model, context.detector)
            scores = score_photos(pipeline, context.photos, model.labels)
        entry["photos"] = {"pipeline": name, "threads": threads, **scores}
    except Exception as exc:  # any failure of the photo pass, whatever its type, skips only the photos
        log.warning("%s: photos skipped: %s", subject.name, exc)
        entry["photos_skipped"] = f"{type(exc).__name__}: {exc}"


def _macs(path: str) -> int | None:
    """Multiply-accumulates per face of a ``.tflite`` file (``edge/macs.py``); None for other formats."""
    from feredge.edge.macs import count_macs

    return count_macs(path).total if path.endswith(".tflite") else None


def _describe(entry: dict[str, Any], model: EmotionModel) -> None:
    meta = model.metadata
    entry["format"] = format_label(entry["path"], meta.format)
    entry["backend"] = model.runner.backend
    entry["provider"] = getattr(model.runner, "provider", None)  # onnxruntime's execution provider
    entry["runtime"] = package_version(model.runner.backend)
    entry["macs"] = _macs(entry["path"])
    entry["model"] = {
        "input": [meta.input_size, meta.input_size, meta.channels],
        "normalization": meta.normalization,
        "labels": list(meta.labels),
        "backbone": meta.backbone,
        "test_time_flip": meta.test_time_flip,
    }
