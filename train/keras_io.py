"""Loading a trained Keras model: a run folder, or a Keras file with or without metadata.json.

Conversion starts from it and evaluation scores it, so both accept the same inputs and errors.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from feredge.edge.errors import LabelError, MetadataError, ModelLoadError
from feredge.edge.metadata import ModelMetadata, resolve_metadata
from feredge.train.config import TrainConfig

MODEL_FILE = "model.keras"
KERAS_SUFFIXES = (".keras", ".h5")

SIZE_BASIS = "float32 weights of the Keras model (count_params x 4 bytes)"


@dataclass
class SourceModel:
    model: Any  # a tf_keras Model
    metadata: ModelMetadata
    path: Path  # the Keras file
    config: TrainConfig | None  # the run's config.json, when the model sits in a run folder

    @property
    def stem(self) -> str:
        return self.path.stem

    @property
    def float_bytes(self) -> int:
        """The baseline of every size ratio; see ``SIZE_BASIS``."""
        return int(self.model.count_params()) * 4


def load_source(
    path: str | Path, labels: str | Iterable[str] | None = None, normalization: str | None = None
) -> SourceModel:
    """Load the Keras model and its metadata; ``labels`` / ``normalization`` override or replace metadata.json.

    A Keras file without metadata.json needs ``labels``; its input size and channels then come from the
    model's input and its normalization defaults to ``unit``.
    """
    path = Path(path)
    model_file = path / MODEL_FILE if path.is_dir() else path
    if path.is_dir() and not model_file.is_file():
        raise ModelLoadError(f"{path}: not a run folder (no {MODEL_FILE}) and not a model file")
    if not model_file.is_file():
        raise ModelLoadError(f"{path}: model not found")
    if model_file.suffix.lower() not in KERAS_SUFFIXES:
        raise ModelLoadError(
            f"{path}: expected the float Keras model (a run folder, .keras or .h5), "
            f"not a {model_file.suffix or 'suffix-less'} file"
        )
    import tf_keras as keras

    try:
        model = keras.models.load_model(str(model_file), compile=False)
    except Exception as exc:  # Keras raises anything from OSError to ValueError for a bad file
        raise ModelLoadError(f"{model_file}: cannot load the Keras model: {exc}") from exc
    metadata = _metadata(model, model_file, labels, normalization)
    config_file = model_file.parent / "config.json"
    config = TrainConfig.load(config_file) if config_file.is_file() else None
    return SourceModel(model, metadata, model_file, config)


def _metadata(model, model_file: Path, labels, normalization: str | None) -> ModelMetadata:
    shape = tuple(model.input_shape)
    if len(shape) != 4 or shape[1] != shape[2] or not shape[3]:
        raise ModelLoadError(
            f"{model_file}: expected a square image input (gray, colour or stacked views), got {shape}"
        )
    meta_file = model_file.parent / "metadata.json"
    if not meta_file.is_file() and labels is None:
        raise MetadataError(
            f"{model_file}: no metadata.json beside the model; pass --labels "
            "(and --normalization if the model was not trained on [0, 1] inputs)"
        )
    data = meta_file.read_text() if meta_file.is_file() else None
    try:
        return resolve_metadata(data, shape[1:], model.output_shape[-1], labels, normalization, fmt="keras")
    except (MetadataError, LabelError, ModelLoadError) as exc:
        source = meta_file if data is not None and isinstance(exc, MetadataError) else model_file
        raise type(exc)(f"{source}: {str(exc).replace('embedded metadata', 'metadata')}") from exc
