"""Hostile or damaged model files (#29 items 8, 9, 22): label counts, metadata size and depth, checksums."""

from __future__ import annotations

import json
import logging
import struct

import numpy as np
import pytest

from feredge.edge.errors import LabelError, MetadataError, ModelLoadError
from feredge.edge.labels import FER2013, MAX_LABELS, resolve_labels
from feredge.edge.metadata import (
    _BUFFER_DATA,
    _MODEL_BUFFERS,
    MAX_METADATA_BYTES,
    MAX_METADATA_DEPTH,
    METADATA_KEY,
    ModelMetadata,
    _Table,
    model_digest,
    resolve_metadata,
    tflite_metadata_spans,
)
from feredge.edge.model import load_model, shipped_models

SHAPE = (48, 48, 1)


def _names(count: int) -> list[str]:
    return [f"class{i}" for i in range(count)]


def _embedded(**fields: object) -> bytes:
    """Metadata JSON as a model would carry it: the tiny models' fields with ``fields`` replaced."""
    return json.dumps({**ModelMetadata(labels=FER2013).to_dict(), **fields}).encode()


# --- item 8: label counts ---


@pytest.mark.edge
def test_label_count_is_bounded_wherever_labels_come_from():
    assert len(resolve_labels(_names(MAX_LABELS))) == MAX_LABELS
    with pytest.raises(LabelError, match=rf"^{MAX_LABELS + 1} labels; at most {MAX_LABELS} are supported$"):
        resolve_labels(_names(MAX_LABELS + 1))
    with pytest.raises(LabelError, match=rf"{MAX_LABELS + 1} labels; at most"):
        resolve_labels(",".join(_names(MAX_LABELS + 1)))
    with pytest.raises(MetadataError, match=rf"{MAX_LABELS + 1} labels; at most {MAX_LABELS}"):
        ModelMetadata(labels=tuple(_names(MAX_LABELS + 1)))


@pytest.mark.edge
def test_sixteen_thousand_embedded_labels_are_refused_for_their_number():
    """Checking them took 11.6 s (a quadratic duplicate search) before a label-count error."""
    with pytest.raises(MetadataError, match=rf"16000 labels; at most {MAX_LABELS} are supported$"):
        resolve_metadata(_embedded(labels=_names(16000)), SHAPE, 7)


@pytest.mark.edge
def test_a_million_embedded_labels_are_refused_by_the_metadata_size():
    raw = b'{"labels": [' + b'"x",' * 1_000_000 + b'"y"]}'
    with pytest.raises(MetadataError, match=rf"embedded metadata is {len(raw)} bytes; at most {MAX_METADATA_BYTES}"):
        resolve_metadata(raw, SHAPE, 7)


@pytest.mark.edge
def test_duplicate_labels_are_found_and_named_briefly():
    names = _names(500) * 2
    with pytest.raises(LabelError, match=r"duplicate labels after alias mapping: class0, class1, .* and 490 more$"):
        resolve_labels(names)


@pytest.mark.edge
def test_a_label_count_mismatch_names_few_labels():
    with pytest.raises(LabelError, match=r"^999 labels \(class0, .*, class9, \.\.\.\) but the model has 7 outputs$"):
        resolve_metadata(_embedded(labels=_names(999)), SHAPE, 7)


# --- item 9: metadata size, depth and numbers ---


@pytest.mark.edge
def test_deeply_nested_metadata_is_refused_before_parsing():
    """json.loads raised a RecursionError (a traceback) at 100k levels."""
    deep = b"[" * 100_000 + b"]" * 100_000
    with pytest.raises(MetadataError, match=rf"nested 100000 levels deep; at most {MAX_METADATA_DEPTH}"):
        resolve_metadata(deep, SHAPE, 7)
    nested: object = 0
    for _ in range(MAX_METADATA_DEPTH - 1):  # with the top-level object: the limit exactly
        nested = [nested]
    assert resolve_metadata(_embedded(extra={"x": nested[0]}), SHAPE, 7).extra  # type: ignore[index]
    with pytest.raises(MetadataError, match=rf"nested {MAX_METADATA_DEPTH + 1} levels deep"):
        resolve_metadata(_embedded(extra={"x": nested}), SHAPE, 7)


@pytest.mark.edge
def test_brackets_inside_strings_are_not_nesting():
    labels = ["[" * 40 + f"{i}" + "{" * 40 for i in range(7)]
    assert resolve_metadata(_embedded(labels=labels, training_data='\\"]]]' + "[" * 40), SHAPE, 7).labels[0] == (
        "[" * 40 + "0" + "{" * 40
    )


@pytest.mark.edge
def test_unterminated_string_with_escaped_quotes_is_refused_at_once():
    with pytest.raises(MetadataError, match=r"not valid JSON: Unterminated string"):
        resolve_metadata(b'"' + b'\\"' * 100_000, SHAPE, 7)


@pytest.mark.edge
def test_a_five_thousand_digit_number_is_a_metadata_error():
    """Python's cap on integer digits raised a bare ValueError (a traceback)."""
    raw = _embedded().replace(b'"input_size": 48', b'"input_size": ' + b"9" * 5000)
    with pytest.raises(MetadataError, match=r"holds a number of more than \d+ digits"):
        resolve_metadata(raw, SHAPE, 7)


@pytest.mark.edge
def test_metadata_file_size_is_checked_before_reading(tmp_path):
    path = tmp_path / "metadata.json"
    path.write_bytes(b" " * (MAX_METADATA_BYTES + 1))
    with pytest.raises(MetadataError, match=rf"metadata.json: metadata is {MAX_METADATA_BYTES + 1} bytes; at most"):
        ModelMetadata.load(path)


@pytest.mark.edge
def test_deep_metadata_inside_a_model_is_refused_naming_the_file(tmp_path, tiny_int8_model):
    data = tiny_int8_model.read_bytes()
    start, end = tflite_metadata_spans(data)[METADATA_KEY]
    half = (end - start) // 2
    path = tmp_path / "deep.tflite"
    path.write_bytes(data[:start] + b"[" * half + b"]" * (end - start - half) + data[end:])
    with pytest.raises(MetadataError, match=rf"deep.tflite: embedded metadata is nested {half} levels deep"):
        load_model(path, threads=1)


# --- item 22: checksums ---


def _buffer_spans(data: bytes) -> list[tuple[int, int]]:
    """(start, end) of each buffer of a TFLite file, in the file's buffer order."""
    model = _Table(data, struct.unpack_from("<I", data, 0)[0])
    spans = []
    for buffer in model.tables(_MODEL_BUFFERS):
        start, length = buffer.vector(_BUFFER_DATA)
        spans.append((start, start + length))
    return spans


def _kernel_span(data: bytes) -> tuple[int, int]:
    """The tiny models' 2x3x3x1 box-filter kernel: 18 int8 weights, 127 each."""
    (span,) = [(start, end) for start, end in _buffer_spans(data) if end - start == 18]
    return span


def _flipped(data: bytes, at: int, mask: int = 0x5A) -> bytes:
    return data[:at] + bytes([data[at] ^ mask]) + data[at + 1 :]


def _without_checksum(data: bytes) -> bytes:
    """``data`` whose embedded metadata has an empty ``model_sha256``, padded to keep every offset."""
    start, end = tflite_metadata_spans(data)[METADATA_KEY]
    text = json.loads(data[start:end])
    text["model_sha256"] = ""
    raw = json.dumps(text).encode()
    assert len(raw) <= end - start
    return data[:start] + raw.ljust(end - start) + data[end:]


@pytest.mark.edge
def test_every_committed_model_carries_its_checksum_and_loads_without_a_warning(tiny_models, caplog):
    paths = [path for name, path in tiny_models.items() if name not in ("float32_plain", "no_labels")]
    for path in [*paths, *shipped_models()]:
        data = path.read_bytes()
        span = tflite_metadata_spans(data)[METADATA_KEY]
        with caplog.at_level(logging.WARNING, logger="feredge"):
            model = load_model(path, threads=1)
        assert model.metadata.model_sha256 == model_digest(data, span), path.name
    assert not caplog.records


@pytest.mark.edge
def test_a_flipped_weight_byte_is_refused(tmp_path, tiny_int8_model, caplog):
    """It loaded silently and gave other answers."""
    data = tiny_int8_model.read_bytes()
    start, _ = _kernel_span(data)
    flipped = _flipped(data, start, 0x80)  # one kernel weight 127 -> -1
    path = tmp_path / "int8.tflite"
    path.write_bytes(flipped)
    with pytest.raises(ModelLoadError, match=r"^.*int8.tflite: checksum mismatch: the file has changed since it was"):
        load_model(path, threads=1)
    # the same flip without the checksum: it loads, with a warning, and answers differently
    path.write_bytes(_without_checksum(flipped))
    with caplog.at_level(logging.WARNING, logger="feredge"):
        damaged = load_model(path, threads=1)
    assert "no checksum in its metadata" in caplog.text
    batch = np.random.default_rng(0).random((8, *SHAPE), dtype=np.float32)
    assert not np.array_equal(damaged.predict(batch), load_model(tiny_int8_model, threads=1).predict(batch))


@pytest.mark.edge
def test_a_flipped_byte_anywhere_but_in_the_metadata_text_never_loads(tmp_path, tiny_int8_model):
    """The checksum covers the graph, the quantization scales and the flatbuffer's own structure too."""
    data = tiny_int8_model.read_bytes()
    start, end = tflite_metadata_spans(data)[METADATA_KEY]
    outside = np.concatenate([np.arange(0, start), np.arange(end, len(data))])
    path = tmp_path / "flipped.tflite"
    for at in np.random.default_rng(3).choice(outside, 60, replace=False):
        path.write_bytes(_flipped(data, int(at)))
        with pytest.raises((ModelLoadError, MetadataError)):
            load_model(path, threads=1)


@pytest.mark.edge
def test_a_malformed_checksum_is_a_metadata_error():
    with pytest.raises(MetadataError, match=r"model_sha256 must be 64 lowercase hex digits or empty, got 'ABC'"):
        resolve_metadata(_embedded(model_sha256="ABC"), SHAPE, 7)


def test_embedding_seals_the_file_and_embedding_again_reuses_the_metadata_buffer(tiny_int8_model):
    pytest.importorskip("tensorflow.lite.tools.flatbuffer_utils")
    from feredge.convert.embed import embed_tflite_metadata

    data = tiny_int8_model.read_bytes()
    once = embed_tflite_metadata(data, ModelMetadata(labels=FER2013, temperature=1.5))
    twice = embed_tflite_metadata(once, ModelMetadata(labels=FER2013, temperature=2.5))
    for sealed in (once, twice):
        span = tflite_metadata_spans(sealed)[METADATA_KEY]
        assert ModelMetadata.from_json(sealed[span[0] : span[1]]).model_sha256 == model_digest(sealed, span)
    assert len(twice) == len(once)  # the first JSON was replaced, not left behind in an orphan buffer
    weights = [data[a:b] for a, b in _buffer_spans(data)]
    assert [once[a:b] for a, b in _buffer_spans(once)][: len(weights) - 1] == weights[:-1]  # all but the metadata


def test_embedded_onnx_metadata_is_sealed_and_checked(tmp_path):
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper

    from feredge.convert.embed import embed_onnx_metadata

    weights = np.linspace(-1, 1, 48 * 48 * 7, dtype=np.float32).reshape(48 * 48, 7)
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["input"], ["flat"]), helper.make_node("MatMul", ["flat", "w"], ["probs"])],
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 48, 48, 1])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 7])],
        [helper.make_tensor("w", TensorProto.FLOAT, weights.shape, weights.ravel().tobytes(), raw=True)],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    proto.ir_version = 8
    embed_onnx_metadata(proto, ModelMetadata(labels=FER2013))
    path = tmp_path / "tiny.onnx"
    onnx.save(proto, path)
    assert len(load_model(path, threads=1).metadata.model_sha256) == 64
    data = path.read_bytes()
    at = data.index(weights.tobytes()) + 1000
    path.write_bytes(_flipped(data, at))
    with pytest.raises(ModelLoadError, match=r"tiny.onnx: checksum mismatch"):
        load_model(path, threads=1)
