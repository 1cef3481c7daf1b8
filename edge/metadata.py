"""Versioned model metadata, and reading it from inside a ``.tflite`` without TensorFlow.

Training writes ``metadata.json`` beside the Keras model; conversion embeds the same JSON in the
TFLite flatbuffer's ``metadata`` table (name ``feredge``) or in ONNX ``metadata_props``, so the
runtime needs no side file. The flatbuffer reader below is a few dozen lines of ``struct``: pulling
in the ``flatbuffers`` package or TensorFlow for one lookup would defeat the small edge install.
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
import re
import struct
import sys
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from feredge.edge.errors import LabelError, MetadataError, ModelLoadError, OptionError
from feredge.edge.labels import MAX_LABELS, resolve_labels
from feredge.edge.preprocess import NORMALIZATIONS, PreprocessSpec

SCHEMA = "feredge.model"
# 2 added photometric, framing and temperature: a version-1 reader would ignore them and feed the
# model pixels it was not trained on, so it must refuse these models rather than skip the fields.
SCHEMA_VERSION = 2
MARGIN_RANGE = (-0.3, 1.0)
OFFSET_RANGE = (-0.3, 0.3)
TEMPERATURE_RANGE = (0.01, 100.0)
# A face model's square input side in pixels: far below or above this is a corrupt field, not a model.
INPUT_SIZE_RANGE = (8, 1024)
# The logit adjustment's strength: 1 removes the training prior, 0 keeps the raw network; beyond a few the
# prior's inverse dominates every face.
PRIOR_TAU_RANGE = (0.0, 3.0)
# |sum(class_prior) - 1|: a prior written from counts sums to 1 up to float rounding and the JSON's digits.
PRIOR_SUM_TOLERANCE = 1e-3
METADATA_KEY = "feredge"
# Checked before parsing: real metadata is a few KB and 3 levels deep (framing -> detector -> margin);
# JSON far past that is a corrupt or hostile file, and parsing it would cost memory or a RecursionError.
MAX_METADATA_BYTES = 256 * 1024
MAX_METADATA_DEPTH = 16
# The metadata's SHA-256 (``model_sha256``) while the file around it is hashed: same length as a digest,
# so writing the digest in its place moves no byte that the digest covers.
SHA256_PLACEHOLDER = "0" * 64


@dataclass(frozen=True)
class ModelMetadata:
    """Everything the runtime needs to feed a model and name its outputs."""

    labels: tuple[str, ...]
    input_size: int = 48
    channels: int = 1
    normalization: str = "unit"
    photometric: str = "none"
    crop_margin: float = 0.1
    framing: dict[str, dict[str, float]] = field(default_factory=dict)  # detector -> margin, offset
    temperature: float = 1.0
    backbone: str = "unknown"
    training_data: str = "unknown"
    format: str = "keras"
    source_model: str = ""
    calibration_size: int = 0
    test_time_flip: bool = False
    # Training class frequencies (ordered like labels) and the default strength of removing them from the
    # scores (``prior_tau``): see ``feredge.edge.calibration.apply_temperature``.
    class_prior: tuple[float, ...] | None = None
    prior_tau: float = 0.0
    # SHA-256 of the model file with this metadata's JSON cut out (``model_digest``); "" for files written
    # before it existed. Checked at load.
    model_sha256: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    schema: str = SCHEMA
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        # JSON gives any type for any field: a float size or a "no" flag would load and then misbehave at
        # predict time, so each field is checked for its type here and stored as the plain Python type.
        if not isinstance(self.labels, list | tuple) or not all(isinstance(label, str) for label in self.labels):
            raise MetadataError(f"labels must be a list of names (strings), got {self.labels!r:.80}")
        if len(self.labels) > MAX_LABELS:
            raise MetadataError(f"{len(self.labels)} labels; at most {MAX_LABELS} are supported")
        _set(self, "labels", resolve_labels(list(self.labels)))
        _set(self, "input_size", _integer("input_size", self.input_size, *INPUT_SIZE_RANGE))
        if not is_integer(self.channels):
            raise MetadataError(
                f"channels must be the integer 1 or 3 (or the number of stacked photometric views), "
                f"got {self.channels!r}"
            )
        _set(self, "channels", int(self.channels))
        for name in ("normalization", "photometric", "backbone", "training_data", "format", "source_model", "schema"):
            if not isinstance(getattr(self, name), str):
                raise MetadataError(f"{name} must be a string, got {getattr(self, name)!r:.80}")
        self.preprocess_spec()  # validates size, channels, normalization and photometric
        _set(self, "crop_margin", _number("crop_margin", self.crop_margin, MARGIN_RANGE))
        if not isinstance(self.framing, dict):
            raise MetadataError(f"framing must map detector names to margin/offset, got {self.framing!r}")
        framing = {}
        for detector, frame in self.framing.items():
            if not isinstance(detector, str):
                raise MetadataError(f"framing keys must be detector names (strings), got {detector!r:.80}")
            if not isinstance(frame, dict) or set(frame) - {"margin", "offset"}:
                raise MetadataError(f"framing[{detector!r}] must hold only 'margin' and 'offset', got {frame!r}")
            framing[detector] = {
                key: _number(f"framing[{detector!r}].{key}", value, MARGIN_RANGE if key == "margin" else OFFSET_RANGE)
                for key, value in frame.items()
            }
        _set(self, "framing", framing)
        _set(self, "temperature", _number("temperature", self.temperature, TEMPERATURE_RANGE))
        _set(self, "calibration_size", _integer("calibration_size", self.calibration_size, 0))
        if not isinstance(self.test_time_flip, bool | np.bool_):
            raise MetadataError(f"test_time_flip must be true or false, got {self.test_time_flip!r:.80}")
        _set(self, "test_time_flip", bool(self.test_time_flip))
        _set(self, "class_prior", _class_prior(self.class_prior, len(self.labels)))
        _set(self, "prior_tau", _number("prior_tau", self.prior_tau, PRIOR_TAU_RANGE))
        if self.prior_tau and (problem := self.prior_problem()):
            raise MetadataError(f"prior_tau is {self.prior_tau:g} but {problem}")
        if not isinstance(self.model_sha256, str) or not _SHA256.fullmatch(self.model_sha256):
            raise MetadataError(f"model_sha256 must be 64 lowercase hex digits or empty, got {self.model_sha256!r:.80}")
        if not isinstance(self.extra, dict):
            raise MetadataError(f"extra must be a JSON object, got {self.extra!r:.80}")
        _set(self, "schema_version", _schema_version(self.schema_version))

    def preprocess_spec(self) -> PreprocessSpec:
        try:
            return PreprocessSpec(self.input_size, self.channels, self.normalization, self.photometric)
        except ValueError as exc:
            raise MetadataError(f"invalid preprocessing in metadata: {exc}") from exc

    def prior_problem(self) -> str | None:
        """Why no prior can be removed from this model's scores (no ``class_prior``, or a class that training
        never saw: log 0 would give it every face), or None when one can."""
        if self.class_prior is None:
            return "it has no training class prior (class_prior) in its metadata"
        unseen = [label for label, p in zip(self.labels, self.class_prior, strict=True) if p == 0]
        if unseen:
            names = ", ".join(unseen[:5]) + (", ..." if len(unseen) > 5 else "")
            return f"its training class prior is 0 for {names} (never trained on)"
        return None

    def framing_for(self, detector: str) -> tuple[float, float]:
        """(margin, offset) of the square crop around a box from ``detector``.

        Detectors frame faces differently (Haar's boxes are larger than YuNet's), so the crop that
        looks like a training face is measured per detector; unmeasured detectors get ``crop_margin``.
        """
        frame = self.framing.get(detector, {})
        return float(frame.get("margin", self.crop_margin)), float(frame.get("offset", 0.0))

    def replace(self, **changes: Any) -> ModelMetadata:
        """A copy with ``changes``; the copy is written by this feredge, so it takes its schema version."""
        changes.setdefault("schema_version", SCHEMA_VERSION)
        return ModelMetadata(**{**self.to_dict(), **changes})

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["labels"] = list(self.labels)
        data["class_prior"] = None if self.class_prior is None else list(self.class_prior)
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelMetadata:
        _check_object(data)
        if data.get("schema", SCHEMA) != SCHEMA:
            raise MetadataError(f"unknown metadata schema {data.get('schema')!r:.80}")
        version = _schema_version(data.get("schema_version", SCHEMA_VERSION))
        if version > SCHEMA_VERSION:
            raise MetadataError(
                f"metadata schema version {version} is newer than this feredge understands "
                f"({SCHEMA_VERSION}); upgrade feredge"
            )
        if not data.get("labels"):
            raise MetadataError("metadata has no labels; pass the labels explicitly")
        if not isinstance(data["labels"], list) or not all(isinstance(label, str) for label in data["labels"]):
            raise MetadataError(f"metadata labels must be a list of names, got {data['labels']!r:.80}")
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in known}
        kwargs["labels"] = tuple(data["labels"])
        try:
            return cls(**kwargs)
        except (TypeError, ValueError) as exc:
            raise MetadataError(f"invalid metadata: {exc}") from exc

    @classmethod
    def from_json(cls, text: str | bytes) -> ModelMetadata:
        return cls.from_dict(parse_metadata_json(text))

    def save(self, path: str | Path) -> None:
        from feredge.edge.atomic import atomic_write_text

        atomic_write_text(path, self.to_json() + "\n")

    @classmethod
    def load(cls, path: str | Path) -> ModelMetadata:
        path = Path(path)
        if not path.is_file():
            raise MetadataError(f"{path}: metadata file not found")
        if path.stat().st_size > MAX_METADATA_BYTES:
            raise MetadataError(f"{path}: {_too_large(path.stat().st_size)}")
        try:
            return cls.from_json(path.read_bytes())
        except MetadataError as exc:
            raise MetadataError(f"{path}: {exc}") from exc


def _set(metadata: ModelMetadata, name: str, value: Any) -> None:
    """Store a checked field on the frozen dataclass."""
    object.__setattr__(metadata, name, value)


def is_integer(value: Any) -> bool:
    """An int (numpy's too), not a bool: JSON's true would otherwise pass for 1."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_real(value: Any) -> bool:
    """An int or float (numpy's too), not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _integer(name: str, value: Any, low: int, high: int | None = None) -> int:
    if not is_integer(value) or value < low or (high is not None and value > high):
        within = f"within [{low}, {high}]" if high is not None else f">= {low}"
        raise MetadataError(f"{name} must be an integer {within}, got {value!r:.80}")
    return int(value)


def _number(name: str, value: Any, bounds: tuple[float, float]) -> float:
    """A real (int or float, numpy's too, not a bool) within ``bounds``, as a float; NaN and infinities
    fail the (finite) bounds check."""
    if not is_real(value) or not bounds[0] <= value <= bounds[1]:
        raise MetadataError(f"{name} must be a number within [{bounds[0]}, {bounds[1]}], got {value!r:.80}")
    return float(value)


_SHA256 = re.compile(r"(?:[0-9a-f]{64})?")


def _class_prior(value: Any, count: int) -> tuple[float, ...] | None:
    """The training prior as floats: one per label, each >= 0, summing to 1."""
    if value is None:
        return None
    if not isinstance(value, list | tuple | np.ndarray) or len(value) != count:
        raise MetadataError(f"class_prior must be a list of {count} numbers (one per label), got {value!r:.80}")
    if not all(is_real(p) and math.isfinite(p) and p >= 0 for p in value):
        raise MetadataError(f"class_prior entries must be numbers >= 0, got {list(value)!r:.80}")
    prior = tuple(float(p) for p in value)
    if abs(math.fsum(prior) - 1.0) > PRIOR_SUM_TOLERANCE:
        raise MetadataError(f"class_prior must sum to 1 (within {PRIOR_SUM_TOLERANCE:g}), sums to {math.fsum(prior):g}")
    return prior


def _schema_version(value: Any) -> int:
    if not is_integer(value) or value < 1:
        raise MetadataError(f"metadata schema_version must be an integer >= 1, got {value!r:.80}")
    return int(value)


_JSON_KINDS = {list: "a JSON list", str: "a JSON string", int: "a number", float: "a number", bool: "a boolean"}


def _check_object(data: Any) -> None:
    """Metadata is a JSON object; a list or a scalar would fail later with a bare TypeError."""
    if not isinstance(data, dict):
        kind = "null" if data is None else _JSON_KINDS.get(type(data), type(data).__name__)
        raise MetadataError(f"metadata must be a JSON object ({{...}}), got {kind}")


def _too_large(size: int) -> str:
    return f"metadata is {size} bytes; at most {MAX_METADATA_BYTES} are supported"


# A JSON string, or an unterminated one up to the end: never failing, the scan stays linear in the text.
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*+"?')
_OPENERS = np.zeros(256, np.int8)
_OPENERS[[ord("["), ord("{")]] = 1
_OPENERS[[ord("]"), ord("}")]] = -1


def parse_metadata_json(text: str | bytes) -> Any:
    """Metadata JSON -> Python objects, refusing before parsing what no model carries: more than
    ``MAX_METADATA_BYTES`` or nesting deeper than ``MAX_METADATA_DEPTH`` (json recurses once per level).
    Python's limit on integer digits (a 5000-digit number) is a ``MetadataError`` like any other bad value."""
    if len(text) > MAX_METADATA_BYTES:  # a str has no more characters than UTF-8 bytes
        raise MetadataError(_too_large(len(text)))
    try:
        raw = text.encode("utf-8") if isinstance(text, str) else bytes(text)
    except UnicodeEncodeError as exc:
        raise MetadataError(f"metadata is not valid UTF-8 text: {exc}") from exc
    if len(raw) > MAX_METADATA_BYTES:
        raise MetadataError(_too_large(len(raw)))
    brackets = _OPENERS[np.frombuffer(_JSON_STRING.sub(b'""', raw), np.uint8)]
    depth = int(np.cumsum(brackets, dtype=np.int64).max(initial=0))
    if depth > MAX_METADATA_DEPTH:
        raise MetadataError(f"metadata is nested {depth} levels deep; at most {MAX_METADATA_DEPTH} are supported")
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise MetadataError(f"metadata is not valid JSON: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise MetadataError(f"metadata is not valid UTF-8 text: {exc}") from exc
    except ValueError as exc:  # what is left is Python's cap on integer digits; no metadata number comes near it
        limit = sys.get_int_max_str_digits()
        raise MetadataError(f"metadata holds a number of more than {limit} digits; no field takes one") from exc


def resolve_metadata(
    data: str | bytes | dict[str, Any] | None,
    input_shape: tuple[int, int, int],
    num_outputs: int,
    labels: str | Iterable[str] | None = None,
    normalization: str | None = None,
    fmt: str = "unknown",
) -> ModelMetadata:
    """A model's metadata, checked against its real input shape (H, W, C) and output count.

    ``labels`` and ``normalization`` override what the model carries; a model without metadata
    needs ``labels`` and takes its input size and channels from ``input_shape``. ``data`` is the
    embedded JSON text or an already parsed object.
    """
    if isinstance(data, str | bytes):
        try:
            data = parse_metadata_json(data)
        except MetadataError as exc:
            raise MetadataError(f"embedded {exc}") from exc
    if data is not None:
        _check_object(data)
    overrides: dict[str, Any] = {}
    if labels is not None:
        overrides["labels"] = list(resolve_labels(labels))
    if normalization is not None:
        if normalization not in NORMALIZATIONS:  # the caller's option, not the model's metadata, is wrong
            raise OptionError(f"unknown normalization {normalization!r}; choose from {', '.join(NORMALIZATIONS)}")
        overrides["normalization"] = normalization
    if data is None:
        if labels is None:
            raise MetadataError("model has no feredge metadata; pass its labels (e.g. --labels fer2013)")
        data = {"input_size": input_shape[0], "channels": input_shape[2], "format": fmt}
    metadata = ModelMetadata.from_dict({**data, **overrides})
    expected = (metadata.input_size, metadata.input_size, metadata.channels)
    if tuple(input_shape) != expected:
        raise ModelLoadError(f"metadata says input {expected} but the model's input is {tuple(input_shape)}")
    if len(metadata.labels) != num_outputs:
        names = ", ".join(metadata.labels[:10]) + (", ..." if len(metadata.labels) > 10 else "")
        raise LabelError(f"{len(metadata.labels)} labels ({names}) but the model has {num_outputs} outputs")
    return metadata


# --- TFLite flatbuffer: just enough to find Model.metadata[name].buffer -> Model.buffers[i].data ---

_MODEL_BUFFERS, _MODEL_METADATA = 4, 6
_META_NAME, _META_BUFFER = 0, 1
_BUFFER_DATA, _BUFFER_OFFSET, _BUFFER_SIZE = 0, 1, 2


class _Table:
    def __init__(self, buf: bytes, pos: int) -> None:
        self.buf, self.pos = buf, pos
        self.vtable = pos - struct.unpack_from("<i", buf, pos)[0]
        self.vsize = struct.unpack_from("<H", buf, self.vtable)[0]

    def _field(self, index: int) -> int:
        slot = 4 + 2 * index
        if slot >= self.vsize:
            return 0
        return struct.unpack_from("<H", self.buf, self.vtable + slot)[0]

    def _indirect(self, index: int) -> int | None:
        off = self._field(index)
        if not off:
            return None
        at = self.pos + off
        return at + struct.unpack_from("<I", self.buf, at)[0]

    def scalar(self, index: int, fmt: str, default: int = 0) -> int:
        off = self._field(index)
        return struct.unpack_from(fmt, self.buf, self.pos + off)[0] if off else default

    def vector(self, index: int) -> tuple[int, int]:
        """(start, length) of a vector field; (0, 0) when absent."""
        at = self._indirect(index)
        if at is None:
            return 0, 0
        return at + 4, struct.unpack_from("<I", self.buf, at)[0]

    def tables(self, index: int) -> list[_Table]:
        start, length = self.vector(index)
        out = []
        for i in range(length):
            at = start + 4 * i
            out.append(_Table(self.buf, at + struct.unpack_from("<I", self.buf, at)[0]))
        return out

    def string(self, index: int) -> str:
        start, length = self.vector(index)
        return self.buf[start : start + length].decode("utf-8", "replace")


def tflite_metadata_spans(data: bytes) -> dict[str, tuple[int, int]]:
    """Where each entry of a TFLite model's metadata table lies in ``data``: ``name -> (start, end)``."""
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise MetadataError("not a TFLite flatbuffer (missing TFL3 identifier)")
    try:
        model = _Table(data, struct.unpack_from("<I", data, 0)[0])
        buffers = model.tables(_MODEL_BUFFERS)
        spans = {}
        for meta in model.tables(_MODEL_METADATA):
            buffer = buffers[meta.scalar(_META_BUFFER, "<I")]
            offset = buffer.scalar(_BUFFER_OFFSET, "<Q")
            if offset > 1:
                start, length = offset, buffer.scalar(_BUFFER_SIZE, "<Q")
            else:
                start, length = buffer.vector(_BUFFER_DATA)
            if start + length > len(data):
                raise MetadataError(f"metadata entry {meta.string(_META_NAME)!r:.40} runs past the end of the file")
            spans[meta.string(_META_NAME)] = (start, start + length)
    except (struct.error, IndexError) as exc:
        raise MetadataError(f"corrupt TFLite flatbuffer: {exc}") from exc
    return spans


def tflite_metadata_entries(data: bytes) -> dict[str, bytes]:
    """All ``name -> bytes`` entries of a TFLite model's metadata table."""
    return {name: data[start:end] for name, (start, end) in tflite_metadata_spans(data).items()}


def read_tflite_metadata(data: bytes) -> ModelMetadata | None:
    """The embedded feredge metadata, or None for a plain ``.tflite``."""
    raw = tflite_metadata_entries(data).get(METADATA_KEY)
    return None if raw is None else ModelMetadata.from_json(raw)


def model_digest(data: bytes, span: tuple[int, int]) -> str:
    """SHA-256 (hex) of a model file's bytes with ``data[start:end]``, its feredge metadata JSON, cut out.

    Everything the interpreter reads is covered: weights, graph, quantization scales, the other metadata
    entries and the flatbuffer (or protobuf) structure, including the JSON's own length prefix. The JSON
    itself cannot be: it holds the digest. Its fields are checked one by one instead.
    """
    start, end = span
    view = memoryview(data)
    digest = hashlib.sha256(view[:start])
    digest.update(view[end:])
    return digest.hexdigest()
