"""An emotion classifier without detection: face tensors or crops in, class probabilities out.

This is the interface the evaluator and the benchmarks share with ``EmotionRecognizer``::

    from feredge.edge.model import load_model
    model = load_model("model_int8.tflite", threads=2)
    probs = model.predict_crops([face_bgr_or_gray, ...])   # (N, K) float32, rows sum to 1
    model.metadata.labels                                  # names of the K columns

Preprocessing always goes through the contract (``feredge.edge.preprocess``), driven by the metadata
embedded in the model, so a model is fed exactly what it saw in training.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from feredge.edge.calibration import apply_temperature, softmax
from feredge.edge.cpu import check_threads, default_threads
from feredge.edge.decode import check_model_file
from feredge.edge.errors import LabelError, MetadataError, ModelLoadError, OptionError
from feredge.edge.labels import resolve_labels
from feredge.edge.metadata import (
    METADATA_KEY,
    PRIOR_TAU_RANGE,
    ModelMetadata,
    is_real,
    model_digest,
    parse_metadata_json,
    resolve_metadata,
    tflite_metadata_spans,
)
from feredge.edge.preprocess import preprocess_faces
from feredge.edge.tflite_runner import TFLiteRunner
from feredge.edge.tta import flip_average

log = logging.getLogger(__name__)

MODELS_DIR = Path(__file__).resolve().parent / "models"
DEFAULT_MODEL = MODELS_DIR / "feredge_default_int8.tflite"


def shipped_models() -> list[Path]:
    """Model files installed with the package (the int8 default, its fp16 twin, the accurate ensemble, the crops
    model), the default first."""
    return sorted(MODELS_DIR.glob("*.tflite"), key=lambda p: (p.name != DEFAULT_MODEL.name, p.name))


# Rows of a softmax output sum to 1 up to int8 rounding (K * scale / 2, about 0.014 for 7 classes).
_PROBABILITY_TOLERANCE = 0.05


class Runner(Protocol):
    """What ``EmotionModel`` needs from an inference backend (TFLite or onnxruntime)."""

    input_shape: tuple[int, int, int]
    num_outputs: int
    backend: str  # pip package that runs the model, e.g. "ai-edge-litert"

    def run(self, batch: np.ndarray) -> np.ndarray: ...


class EmotionModel:
    """A loaded classifier plus its metadata; build it with ``load_model``."""

    def __init__(self, runner: Runner, metadata: ModelMetadata, name: str, threads: int | None = None) -> None:
        self.runner = runner
        self.metadata = metadata
        self.name = name
        self.threads = threads  # interpreter threads it was loaded with (None: not known)
        self.spec = metadata.preprocess_spec()

    @property
    def labels(self) -> tuple[str, ...]:
        return self.metadata.labels

    def preprocess(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """Decoded face crops (uint8 gray or BGR, any size) -> float32 (N, S, S, C) model input, in one
        vectorised step (``preprocess_faces``)."""
        return preprocess_faces(crops, self.spec)

    def predict(self, batch: np.ndarray, prior_tau: float | None = None) -> np.ndarray:
        """float32 (N, S, S, C) preprocessed tensors -> float32 (N, K) probabilities.

        Quantized outputs are dequantized; softmax is applied only when the outputs are not already
        probabilities. With ``test_time_flip`` in the metadata each row is the mean of the crop's
        and its mirror's scores, both computed in the same batched call. Then ``prior_tau`` times the log
        of the training prior is taken from the log scores and the temperature applied
        (``apply_temperature``); ``None`` takes the model's own ``prior_tau``, and 0 leaves the scores as
        the network gives them.
        """
        shift = self.prior_shift(prior_tau)
        batch = np.asarray(batch, np.float32)
        expected = (self.spec.input_size, self.spec.input_size, self.spec.channels)
        if batch.ndim != 4 or batch.shape[1:] != expected:
            raise ValueError(
                f"{self.name}: expected a batch of shape (N, {', '.join(map(str, expected))}), got {batch.shape}"
            )
        if len(batch) == 0:
            return np.zeros((0, len(self.labels)), np.float32)
        flip = self.metadata.test_time_flip
        probs = flip_average(self._probabilities, batch) if flip else self._probabilities(batch)
        return apply_temperature(probs, self.metadata.temperature, shift)

    def checked_prior_tau(self, prior_tau: float | None) -> float:
        """``prior_tau`` as a float (``None``: the model's own); see ``checked_prior_tau``."""
        return checked_prior_tau(self.metadata, prior_tau, self.name)

    def prior_shift(self, prior_tau: float | None = None) -> np.ndarray | None:
        """``prior_tau * log(class_prior)``, what ``predict`` takes from the log scores; None for tau 0."""
        return prior_shift(self.metadata, prior_tau, self.name)

    def _probabilities(self, batch: np.ndarray) -> np.ndarray:
        return _as_probabilities(self.runner.run(batch))

    def predict_crops(self, crops: Sequence[np.ndarray], prior_tau: float | None = None) -> np.ndarray:
        """Decoded face crops -> float32 (N, K) probabilities (contract preprocessing, one batch)."""
        return self.predict(self.preprocess(crops), prior_tau)


def checked_prior_tau(metadata: ModelMetadata, prior_tau: float | None, name: str) -> float:
    """``prior_tau`` as a float (``None``: the model's own), or ``OptionError`` when it is out of
    ``PRIOR_TAU_RANGE``, or not 0 for a model without a usable training prior (``prior_problem``).

    A function of the metadata, so a Keras run folder (``feredge evaluate``) is adjusted as served."""
    if prior_tau is None:
        return metadata.prior_tau
    check_prior_tau(prior_tau)
    if prior_tau and (problem := metadata.prior_problem()):
        raise OptionError(f"{Path(name).name}: prior_tau must be 0, got {prior_tau:g}: {problem}")
    return float(prior_tau)


def prior_shift(metadata: ModelMetadata, prior_tau: float | None, name: str) -> np.ndarray | None:
    """``prior_tau * log(class_prior)`` of a model's metadata; None for tau 0."""
    tau = checked_prior_tau(metadata, prior_tau, name)
    if tau == 0.0:
        return None
    return tau * np.log(np.asarray(metadata.class_prior, np.float64))


def check_prior_tau(prior_tau: object) -> None:
    """``OptionError`` unless ``prior_tau`` is a number within ``PRIOR_TAU_RANGE`` (not NaN, not a bool)."""
    low, high = PRIOR_TAU_RANGE
    if not is_real(prior_tau) or not low <= prior_tau <= high:  # NaN fails the comparison
        raise OptionError(f"prior_tau must be a number within [{low:g}, {high:g}], got {prior_tau!r:.80}")


def _as_probabilities(outputs: np.ndarray) -> np.ndarray:
    sums = outputs.sum(axis=1, keepdims=True)
    if outputs.min() >= 0.0 and np.all(np.abs(sums - 1.0) <= _PROBABILITY_TOLERANCE):
        return (outputs / sums).astype(np.float32)
    return softmax(outputs)


def load_model(
    path: str | Path | None = None,
    labels: str | Iterable[str] | None = None,
    threads: int | None = None,
    normalization: str | None = None,
) -> EmotionModel:
    """Load a ``.tflite`` (or ``.onnx``) emotion model; ``None`` means the shipped default model.

    ``labels`` (a preset such as ``fer2013``, a comma list or a sequence) and ``normalization``
    override the embedded metadata; a model without metadata needs ``labels``, and then takes its
    input size and channels from the input tensor and ``normalization`` defaults to ``unit``.
    ``threads`` (interpreter threads, >= 1) defaults to ``default_threads()``.

    The file is checked against the checksum in its metadata (``model_sha256``) before an interpreter reads
    it: a mismatch raises ``ModelLoadError``; feredge metadata without a checksum loads with a warning.
    """
    threads = default_threads() if threads is None else check_threads(threads)
    if path is None:
        if not DEFAULT_MODEL.is_file():
            raise ModelLoadError(
                f"no default model is installed (expected {DEFAULT_MODEL}); pass a model path (--model)"
            )
        path = DEFAULT_MODEL
    if labels is not None:  # the user's labels, checked apart: their fault is not the model's
        labels = labels if isinstance(labels, str) else tuple(labels)  # a generator is read once, here
        try:
            resolve_labels(labels)
        except LabelError as exc:
            raise LabelError(f"labels {labels!r}: {exc}") from exc
    path = Path(path)
    runner: Runner
    parsed: Any = None
    if path.suffix.lower() == ".onnx":
        from feredge.edge.onnx_runner import OnnxRunner

        _check_file(path)
        runner = OnnxRunner(path, threads)
        if runner.metadata_json is not None:
            data, raw = path.read_bytes(), runner.metadata_json.encode("utf-8")
            start = data.find(raw)  # protobuf stores the JSON's UTF-8 bytes as they are
            parsed = _checked_metadata(path, data, raw, None if start < 0 else (start, start + len(raw)))
    else:
        data = _read_tflite(path)
        try:
            span = tflite_metadata_spans(data).get(METADATA_KEY)
        except MetadataError as exc:  # a truncated or damaged file, as the interpreter would say
            raise ModelLoadError(f"{path}: not a valid TFLite model ({exc})") from exc
        if span is not None:  # checked before the interpreter parses a file that may be corrupt
            parsed = _checked_metadata(path, data, data[span[0] : span[1]], span)
        runner = TFLiteRunner(data, threads, name=str(path))
    try:
        metadata = resolve_metadata(
            parsed, runner.input_shape, runner.num_outputs, labels, normalization, fmt=path.suffix.lstrip(".").lower()
        )
    except (MetadataError, LabelError, ModelLoadError) as exc:
        raise type(exc)(f"{path}: {exc}") from exc
    if parsed is not None and not metadata.model_sha256:
        log.warning("%s: no checksum in its metadata (an older feredge converted it): corruption goes undetected", path)
    return EmotionModel(runner, metadata, str(path), threads)


def _checked_metadata(path: Path, data: bytes, raw: bytes, span: tuple[int, int] | None) -> Any:
    """The embedded metadata JSON ``raw`` (at ``span`` in the file ``data``), parsed, after the file's digest
    (``model_digest``) was found equal to the metadata's ``model_sha256``: a flipped weight byte loads and
    runs, and gives other answers. ``ModelLoadError`` for a mismatch; metadata without a checksum is
    returned as it is (the caller warns once the metadata is known to be valid)."""
    try:
        parsed = parse_metadata_json(raw)
    except MetadataError as exc:
        raise MetadataError(f"{path}: embedded {exc}") from exc
    expected = parsed.get("model_sha256") if isinstance(parsed, dict) else None
    if isinstance(expected, str) and expected and (span is None or model_digest(data, span) != expected):
        raise ModelLoadError(
            f"{path}: checksum mismatch: the file has changed since it was converted (a corrupt copy, or edited "
            "weights); download or convert it again"
        )
    return parsed


def _check_file(path: Path) -> None:
    check_model_file(path)
    if path.stat().st_size == 0:
        raise ModelLoadError(f"{path}: empty (0-byte) model file")


def _read_tflite(path: Path) -> bytes:
    _check_file(path)
    data = path.read_bytes()
    if data[4:8] != b"TFL3":
        raise ModelLoadError(f"{path}: not a TFLite model (no TFL3 identifier); expected .tflite or .onnx")
    return data
