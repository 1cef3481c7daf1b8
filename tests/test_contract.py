"""The contract shared by training and serving: labels, preprocessing, metadata."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from feredge.edge.decode import decode_image
from feredge.edge.errors import ImageError, LabelError, MetadataError
from feredge.edge.labels import FER2013, canonical, resolve_labels
from feredge.edge.metadata import ModelMetadata, read_tflite_metadata, tflite_metadata_entries
from feredge.edge.metrics import classification_metrics
from feredge.edge.preprocess import (
    PreprocessSpec,
    crop_face,
    normalize,
    prepare_face,
    preprocess_face,
    square_box,
)

pytestmark = pytest.mark.edge  # needs only `pip install .`: .ci/run also runs it in an edge-only venv


def test_fer2013_order_is_the_csv_index_order():
    assert FER2013 == ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")


def test_aliases_and_presets():
    assert canonical(" Anger ") == "angry"
    assert resolve_labels("fer5") == ("angry", "happy", "surprise", "fear", "neutral")
    assert resolve_labels("anger,disgust,fear,happiness,pain,sadness") == (
        "angry",
        "disgust",
        "fear",
        "happy",
        "pain",
        "sad",
    )
    with pytest.raises(LabelError, match="duplicate"):
        resolve_labels(["anger", "angry"])
    with pytest.raises(LabelError):
        resolve_labels(" , ")


@pytest.mark.parametrize(
    ("normalization", "channels", "pixel", "expected"),
    [
        ("unit", 1, 255, [1.0]),
        ("symmetric", 3, 0, [-1.0, -1.0, -1.0]),
        ("raw", 1, 7, [7.0]),
        ("caffe", 3, 100, [100 - 103.939, 100 - 116.779, 100 - 123.68]),
    ],
)
def test_normalization_values(normalization, channels, pixel, expected):
    spec = PreprocessSpec(8, channels, normalization)
    out = preprocess_face(np.full((8, 8), pixel, np.uint8), spec)
    assert out.shape == (8, 8, channels) and out.dtype == np.float32
    np.testing.assert_allclose(out[0, 0], expected, rtol=1e-5)


def test_normalize_runs_on_tensorflow_tensors_with_the_same_result():
    tf = pytest.importorskip("tensorflow")
    spec = PreprocessSpec(16, 3, "imagenet")
    gray = np.random.default_rng(0).integers(0, 256, (2, 16, 16)).astype(np.float32)
    np.testing.assert_allclose(normalize(tf.constant(gray), spec).numpy(), normalize(gray, spec), rtol=1e-6)


def test_colour_handling_gray_bgr_bgra_16bit():
    bgr = np.zeros((20, 30, 3), np.uint8)
    bgr[..., 2] = 200  # red
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    spec = PreprocessSpec(10, 1, "raw")
    expected = preprocess_face(gray, spec)
    np.testing.assert_array_equal(preprocess_face(bgr, spec), expected)
    bgra = decode_image(cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA))
    np.testing.assert_array_equal(preprocess_face(bgra, spec), expected)
    ok, png16 = cv2.imencode(".png", gray.astype(np.uint16) * 257)
    assert ok
    np.testing.assert_array_equal(preprocess_face(decode_image(png16.tobytes()), spec), expected)


def test_decode_errors_name_the_file(tmp_path):
    with pytest.raises(ImageError, match="not found"):
        decode_image(tmp_path / "missing.jpg")
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(ImageError, match="0-byte"):
        decode_image(tmp_path / "empty.jpg")
    (tmp_path / "text.jpg").write_text("hello")
    with pytest.raises(ImageError, match=r"text\.jpg: not a readable image"):
        decode_image(tmp_path / "text.jpg")
    _ok, jpg = cv2.imencode(".jpg", np.full((64, 64), 128, np.uint8))
    (tmp_path / "cut.jpg").write_bytes(jpg.tobytes()[: len(jpg) // 2])
    with pytest.raises(ImageError, match="truncated"):
        decode_image(tmp_path / "cut.jpg")


def test_resize_uses_area_when_shrinking():
    checker = (np.indices((96, 96)).sum(0) % 2 * 255).astype(np.uint8)
    assert prepare_face(checker, 48).std() < 1.0  # INTER_AREA averages the 2x2 blocks to grey


def test_square_box_margin_and_clipping():
    assert square_box((40, 40, 20, 10), 0.25, (100, 100)) == (35, 30, 30, 30)
    x, y, w, h = square_box((0, 0, 20, 20), 0.5, (100, 100))
    assert (x, y) == (0, 0) and w == h == 30
    assert crop_face(np.zeros((100, 100), np.uint8), (90, 90, 20, 20), 0.1).shape == (12, 12)


def test_metadata_roundtrip_and_errors():
    meta = ModelMetadata(labels=("anger", "happiness"), input_size=64, channels=3, normalization="symmetric")
    assert meta.labels == ("angry", "happy")
    assert ModelMetadata.from_json(meta.to_json()) == meta
    with pytest.raises(MetadataError, match="no labels"):
        ModelMetadata.from_dict({"input_size": 48})
    with pytest.raises(MetadataError, match="newer"):
        ModelMetadata.from_dict({**meta.to_dict(), "schema_version": 99})
    with pytest.raises(MetadataError, match="normalization"):
        ModelMetadata.from_dict({**meta.to_dict(), "normalization": "weird"})
    with pytest.raises(MetadataError, match="not a TFLite"):
        tflite_metadata_entries(b"garbage bytes")


def test_metadata_embedded_in_tflite_is_read_back(tiny_int8_model):
    meta = read_tflite_metadata(tiny_int8_model.read_bytes())
    assert meta is not None and meta.labels == FER2013


def test_classification_metrics_match_hand_counts():
    m = classification_metrics([0, 0, 1, 1, 2], [0, 1, 1, 1, 0], ["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(0.6)
    assert m["per_class"]["b"]["precision"] == pytest.approx(2 / 3)
    assert m["per_class"]["c"]["f1"] == 0.0
    assert m["macro_f1"] == pytest.approx((0.5 + 0.8 + 0.0) / 3)
    assert m["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]


def test_atomic_write_replaces_whole_files_with_normal_permissions(tmp_path):
    import os

    from feredge.edge.atomic import atomic_path, atomic_write_text

    target = atomic_write_text(tmp_path / "a.json", "{}")
    mask = os.umask(0)
    os.umask(mask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~mask
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash while writing")
    assert target.read_text() == "{}" and [p.name for p in tmp_path.iterdir()] == ["a.json"]
