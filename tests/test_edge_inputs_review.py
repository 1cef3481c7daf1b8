"""Bad input to the edge runtime gets a typed ``FeredgeError``, never a raw TypeError, cv2.error or warning:
model metadata of the wrong type, malformed or out-of-image boxes, wrong constructor arguments, thin
images, all-NaN arrays and an empty input path."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest

from feredge.cli import main
from feredge.edge.decode import ScaledImage, decode_image_scaled
from feredge.edge.errors import ImageError, MetadataError, OptionError
from feredge.edge.labels import FER2013
from feredge.edge.metadata import METADATA_KEY, ModelMetadata, resolve_metadata, tflite_metadata_entries
from feredge.edge.model import load_model, shipped_models
from feredge.edge.recognizer import EmotionRecognizer

pytestmark = pytest.mark.edge  # needs only `pip install .`: the tiny fixture models and generated arrays

GOOD = {"labels": list(FER2013)}


# --- metadata: every field of the right type, or a MetadataError that names it ---


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"input_size": 48.0}, r"input_size must be an integer within \[8, 1024\], got 48\.0"),
        ({"input_size": True}, r"input_size must be an integer.*got True"),
        ({"input_size": "48"}, r"input_size must be an integer.*got '48'"),
        ({"input_size": 100_000}, r"input_size must be an integer within \[8, 1024\]"),
        ({"channels": "1"}, r"channels must be the integer 1 or 3.*got '1'"),
        ({"channels": 1.0}, r"channels must be the integer 1 or 3.*got 1\.0"),
        ({"schema_version": "2"}, r"schema_version must be an integer >= 1, got '2'"),
        ({"schema_version": -5}, r"schema_version must be an integer >= 1, got -5"),
        ({"schema_version": True}, r"schema_version must be an integer >= 1, got True"),
        ({"test_time_flip": "no"}, r"test_time_flip must be true or false, got 'no'"),
        ({"test_time_flip": 1}, r"test_time_flip must be true or false, got 1"),
        ({"framing": {"yunet": {"margin": True}}}, r"framing\['yunet'\]\.margin must be a number.*got True"),
        ({"framing": {"yunet": {"offset": "0.1"}}}, r"framing\['yunet'\]\.offset must be a number.*got '0\.1'"),
        ({"framing": {"yunet": {"margin": float("nan")}}}, r"framing\['yunet'\]\.margin must be a number.*nan"),
        ({"crop_margin": True}, r"crop_margin must be a number.*got True"),
        ({"crop_margin": float("inf")}, r"crop_margin must be a number.*got inf"),
        ({"temperature": False}, r"temperature must be a number.*got False"),
        ({"temperature": float("nan")}, r"temperature must be a number.*got nan"),
        ({"labels": ["happy", 1]}, r"labels must be a list of names"),
        ({"normalization": ["unit"]}, r"normalization must be a string"),
        ({"calibration_size": 1.5}, r"calibration_size must be an integer >= 0"),
    ],
)
def test_metadata_fields_of_the_wrong_type_are_refused(changes, message):
    with pytest.raises(MetadataError, match=message):
        ModelMetadata.from_dict({**GOOD, **changes})


def test_metadata_numbers_are_stored_as_plain_python_types():
    meta = ModelMetadata.from_dict(
        {**GOOD, "input_size": np.int64(64), "temperature": np.float32(1.5), "framing": {"yunet": {"margin": 0}}}
    )
    assert (meta.input_size, meta.temperature) == (64, 1.5)
    assert type(meta.input_size) is int and type(meta.temperature) is float
    assert meta.framing == {"yunet": {"margin": 0.0}} and meta.framing_for("yunet") == (0.0, 0.0)
    assert ModelMetadata.from_json(meta.to_json()) == meta


@pytest.mark.parametrize(("text", "kind"), [("[1, 2]", "a JSON list"), ("3", "a number"), ('"x"', "a JSON string")])
def test_metadata_that_is_not_a_json_object_is_refused(text, kind):
    with pytest.raises(MetadataError, match=f"metadata must be a JSON object.*got {kind}"):
        resolve_metadata(text, (48, 48, 1), 7)
    with pytest.raises(MetadataError, match=f"got {kind}"):
        ModelMetadata.from_json(text)


def test_a_metadata_file_holding_a_list_is_refused_naming_the_file(tmp_path):
    path = tmp_path / "metadata.json"
    path.write_text(json.dumps([GOOD]))
    with pytest.raises(MetadataError, match=r"metadata\.json: metadata must be a JSON object"):
        ModelMetadata.load(path)


def _with_embedded(tmp_path: Path, model: Path, old: bytes, new: bytes) -> Path:
    """A copy of ``model`` whose embedded metadata JSON has ``old`` replaced by ``new`` padded with
    spaces to the same length, so the flatbuffer's offsets stay valid."""
    assert len(new) <= len(old)
    data = model.read_bytes()
    assert data.count(old) == 1
    path = tmp_path / model.name
    path.write_bytes(data.replace(old, new.ljust(len(old))))
    return path


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (b'"input_size": 48,\n  ', b'"input_size": 48.0,', r"input_size must be an integer.*got 48\.0"),
        (b'"channels": 1,\n  ', b'"channels": "1",', r"channels must be the integer 1 or 3.*got '1'"),
        (b'"test_time_flip": false,', b'"test_time_flip": "no",', r"test_time_flip must be true or false"),
        (b'"schema_version": 1,\n  ', b'"schema_version": -5,', r"schema_version must be an integer >= 1, got -5"),
    ],
    ids=["float-size", "string-channels", "string-flag", "negative-schema"],
)
def test_embedded_metadata_of_the_wrong_type_is_refused_at_load(tmp_path, tiny_int8_model, old, new, message):
    path = _with_embedded(tmp_path, tiny_int8_model, old, new)
    with pytest.raises(MetadataError, match=f"int8\\.tflite: .*{message}"):
        load_model(path, threads=1)


def test_embedded_metadata_that_is_a_list_is_refused_at_load(tmp_path, tiny_int8_model):
    embedded = tflite_metadata_entries(tiny_int8_model.read_bytes())[METADATA_KEY]
    path = _with_embedded(tmp_path, tiny_int8_model, embedded, b'["angry", "happy"]')
    with pytest.raises(MetadataError, match=r"int8\.tflite: metadata must be a JSON object.*got a JSON list"):
        load_model(path, threads=1)


def test_every_shipped_model_still_loads():
    models = shipped_models()
    assert models
    for path in models:
        assert len(load_model(path, threads=1).labels) == 7


# --- EmotionRecognizer: boxes, batches and constructor arguments ---


@pytest.fixture(scope="module")
def recognizer(tiny_int8_model):
    return EmotionRecognizer(tiny_int8_model, detector="none", threads=1)


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return np.full((100, 100, 3), 128, np.uint8)


@pytest.mark.parametrize(
    ("box", "reported"),
    [
        ((90, 90, 20, 20), (90, 90, 20, 20)),
        ((-10, 20, 30, 30), (-10, 20, 30, 30)),
        ((0, 0, 10**9, 10**9), (0, 0, 10**9, 10**9)),
        ((-(10**6), -(10**6), 10**9, 10**9), (-(10**6), -(10**6), 10**9, 10**9)),
        ((10.7, 20.2, 30.9, 30.0), (10, 20, 30, 30)),
    ],
)
def test_given_boxes_partly_outside_are_scored_and_reported_as_given(recognizer, image, box, reported):
    (face,) = recognizer.predict(image, boxes=[box])  # the crop is clipped to the image; a tracker's box is not
    assert face.box == reported and sum(face.scores.values()) == pytest.approx(1.0, abs=0.02)


def test_given_boxes_are_in_original_pixels_of_a_reduced_image(recognizer, image):
    reduced = ScaledImage(image[:50, :50], (100, 100))
    (face,) = recognizer.predict(reduced, boxes=[(90, 90, 20, 20)])
    assert face.box == (90, 90, 20, 20)


@pytest.mark.parametrize(
    ("boxes", "message"),
    [
        ([(500, 500, 20, 20)], r"box \(500, 500, 20, 20\) lies outside the 100x100 image"),
        ([(-50, 0, 50, 10)], r"lies outside the 100x100 image"),
        ([(1, 2, 3)], r"a box must be 4 finite numbers \(x, y, w, h\).*got \(1, 2, 3\)"),
        ([(float("nan"), 0, 10, 10)], r"a box must be 4 finite numbers.*nan"),
        ([(0, 0, float("inf"), 10)], r"a box must be 4 finite numbers.*inf"),
        ([("1", 0, 10, 10)], r"a box must be 4 finite numbers"),
        ([(True, 0, 10, 10)], r"a box must be 4 finite numbers"),
        ([(10, 10, 0, 5)], r"has no area"),
        ([(10, 10, 5, -5)], r"has no area"),
        ((10, 10, 20, 20), r"a box must be 4 finite numbers.*got 10 \(int\); boxes takes a list"),
        (5, r"boxes must be a list of \(x, y, w, h\) boxes or None, got 5"),
        ("0,0,10,10", r"boxes must be a list"),
    ],
)
def test_bad_boxes_are_option_errors(recognizer, image, boxes, message):
    with pytest.raises(OptionError, match=message):
        recognizer.predict(image, boxes=boxes)


@pytest.mark.parametrize(
    "images",
    ["face.png", Path("face.png"), b"\x89PNG", np.zeros((20, 20, 3), np.uint8), np.zeros((20, 20), np.uint8), None],
    ids=["str", "path", "bytes", "bgr-array", "gray-array", "none"],
)
def test_predict_batch_refuses_one_image_instead_of_a_list(recognizer, images):
    with pytest.raises(ImageError, match=r"predict_batch takes a list of images.*pass a list"):
        recognizer.predict_batch(images)


def test_predict_batch_still_takes_lists_and_stacks(recognizer, image):
    assert [len(faces) for faces in recognizer.predict_batch([image, image])] == [1, 1]
    assert [len(faces) for faces in recognizer.predict_batch(np.zeros((2, 30, 30), np.uint8))] == [1, 1]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"detector": None}, r"detector must be a detector name \(.*none\) or an object with a detect\(image\)"),
        ({"detector": object()}, r"detector must be a detector name"),
        ({"threads": 1.5}, r"threads must be >= 1 \(an int or None, at most \d+: 4 per core\), got 1\.5 \(float\)"),
        ({"threads": "2"}, r"threads must be >= 1 \(an int or None, at most \d+: 4 per core\), got '2' \(str\)"),
        ({"threads": True}, r"threads must be >= 1 \(an int or None, at most \d+: 4 per core\), got True \(bool\)"),
        ({"threads": 0}, r"threads must be >= 1"),
        ({"min_confidence": "0.5"}, r"min_confidence must be between 0 and 1 \(a number\), got '0\.5' \(str\)"),
        ({"min_confidence": None}, r"min_confidence must be between 0 and 1 \(a number\), got None"),
        ({"min_confidence": float("nan")}, r"min_confidence must be between 0 and 1 \(a number\)"),
        ({"min_face": "3"}, r"min_face must be >= 0 \(an int or None\), got '3' \(str\)"),
        ({"max_side": 640.0}, r"max_side must be >= 1 \(an int\), got 640\.0"),
        ({"labels": 5}, r"labels must be a preset name .* or a list of names, got 5 \(int\)"),
        ({"labels": ["happy", 3]}, r"labels must be a preset name"),
        ({"model": 5}, r"model must be a model file path .*got 5 \(int\)"),
        ({"model": b"model.tflite"}, r"model must be a model file path .*\(bytes\)"),
        ({"model": ""}, r"model must be a model file path .*got '' \(str\)"),
        ({"normalization": 1}, r"normalization must be a name"),
        ({"detector_model": 3}, r"detector_model must be a file path or None"),
    ],
)
def test_constructor_arguments_of_the_wrong_type_are_option_errors(tiny_int8_model, changes, message):
    with pytest.raises(OptionError, match=message):
        EmotionRecognizer(**{"model": tiny_int8_model, "detector": "none", **changes})


def test_constructor_takes_numpy_numbers_a_label_generator_and_a_detector_object(tiny_int8_model, image):
    class Centre:
        def detect(self, frame: np.ndarray) -> list[tuple[int, int, int, int]]:
            return [(25, 25, 50, 50)]

    labels = (name for name in FER2013)
    recognizer = EmotionRecognizer(
        Path(tiny_int8_model), Centre(), np.int64(1), labels=labels, min_face=np.int32(0), min_confidence=np.float32(0)
    )
    assert recognizer.threads == 1 and recognizer.detector_name == "Centre"
    assert [face.box for face in recognizer.predict(image)] == [(25, 25, 50, 50)]


# --- decoding: thin images and float arrays with no finite value ---


@pytest.mark.parametrize("shape", [(1, 5000), (3, 9000), (9000, 3), (2, 4097, 3)])
def test_thin_png_above_the_reduced_side_decodes(shape):
    ok, data = cv2.imencode(".png", np.full(shape, 200, np.uint8))
    assert ok
    decoded = decode_image_scaled(data.tobytes())
    assert decoded.original_size == (shape[1], shape[0])
    assert min(decoded.image.shape[:2]) >= 1 and decoded.image.min() == decoded.image.max() == 200
    assert decoded.to_original((0, 0, decoded.image.shape[1], decoded.image.shape[0])) == (0, 0, shape[1], shape[0])


@pytest.mark.parametrize("fill", [np.nan, np.inf, -np.inf])
def test_float_array_without_a_finite_value_is_an_image_error_without_a_warning(recognizer, fill):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ImageError, match=r"array: float image has no finite pixel value"):
            recognizer.predict(np.full((50, 50), fill, np.float32))


def test_float_array_with_some_nan_still_decodes():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        image = decode_image_scaled(np.array([[np.nan, 0.5], [1.0, 0.0]], np.float32)).image
    assert image.tolist() == [[0, 127], [255, 0]]


# --- feredge predict: an empty input path ---


def test_predict_refuses_an_empty_path_instead_of_scanning_the_current_folder(
    tiny_int8_model, image, tmp_path, monkeypatch, capsys
):
    assert cv2.imwrite(str(tmp_path / "face.png"), image)
    monkeypatch.chdir(tmp_path)
    args = ["--model", str(tiny_int8_model), "--detector", "none", "--threads", "1", "--json"]
    assert main(["predict", "", *args]) == 2
    captured = capsys.readouterr()
    assert [json.loads(line) for line in captured.out.splitlines()] == [
        {"file": "", "error": "empty input path (''); give an image file or a folder ('.' for the current folder)"}
    ]
    assert "error: empty input path" in captured.err and "face.png" not in captured.out + captured.err


def test_an_empty_path_beside_annotate_inside_the_current_folder_fails_alone(
    tiny_int8_model, image, tmp_path, monkeypatch, capsys
):
    source = tmp_path / "in" / "face.png"
    source.parent.mkdir()
    assert cv2.imwrite(str(source), image)
    monkeypatch.chdir(tmp_path)
    args = ["--model", str(tiny_int8_model), "--detector", "none", "--threads", "1", "--annotate", "out"]
    assert main(["predict", "", str(source), *args]) == 1  # one input failed, the other was done
    assert (tmp_path / "out" / "face.png").is_file()


def test_a_folder_given_as_a_model_is_named_a_folder_not_missing(tmp_path):
    from feredge.edge.errors import ModelLoadError

    with pytest.raises(ModelLoadError, match="is a directory, not a model file"):
        load_model(tmp_path)
    with pytest.raises(ModelLoadError, match="is a directory, not a detector model file"):
        EmotionRecognizer(detector="yunet", detector_model=tmp_path)
    with pytest.raises(ModelLoadError, match="model file not found"):
        load_model(tmp_path / "missing.tflite")


def test_a_file_given_as_an_output_folder_is_named_a_file(tmp_path, capsys):
    blocker = tmp_path / "results.png"
    blocker.write_bytes(b"not a folder")
    assert main(["evaluate-photos", str(tmp_path), "--out", str(blocker)]) == 2
    assert f"{blocker} is a file, not a folder" in capsys.readouterr().err
    assert main(["evaluate-photos", str(blocker), "--out", str(tmp_path / "out")]) == 2
    assert "is a file, not a photo folder" in capsys.readouterr().err


def test_bad_labels_given_by_the_user_are_not_blamed_on_the_model(tiny_int8_model):
    from feredge.edge.errors import LabelError

    with pytest.raises(LabelError) as info:
        load_model(tiny_int8_model, labels="a,a")
    assert str(info.value).startswith("labels 'a,a': duplicate labels") and str(tiny_int8_model) not in str(info.value)
    model = load_model(tiny_int8_model, labels=(name for name in load_model(tiny_int8_model).labels))
    assert model.labels == load_model(tiny_int8_model).labels  # a generator is read once, not emptied
