"""The shipped face detectors: a real face is found with sane landmarks, no face is nothing, bad files are errors."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from feredge.edge import blazeface, detectors
from feredge.edge.detectors import BlazeFaceDetector, YuNetDetector, detect_faces, make_detector
from feredge.edge.errors import ModelLoadError, OptionError
from feredge.edge.options import RecognizerOptions
from feredge.edge.recognizer import EmotionRecognizer

pytestmark = pytest.mark.edge  # needs only `pip install .`: the detector models are package data

ASTRONAUT = Path("/work/shared/data/examples/astronaut.png")  # public domain; one face near (223, 120)
ASTRONAUT_FACE = (178, 63, 90, 113)  # YuNet's box, checked by eye
FINDERS = ("haar", "yunet", "blazeface")


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    if not ASTRONAUT.is_file():
        pytest.skip(f"{ASTRONAUT} not present")
    return cv2.imread(str(ASTRONAUT))


def centre(box) -> np.ndarray:
    x, y, w, h = box
    return np.array([x + w / 2.0, y + h / 2.0])


@pytest.mark.parametrize("name", FINDERS)
def test_each_detector_finds_the_face_in_a_real_photo(name, astronaut) -> None:
    faces = detect_faces(make_detector(name), astronaut)
    assert len(faces) == 1
    width = faces[0].box[2]
    assert np.abs(centre(faces[0].box) - centre(ASTRONAUT_FACE)).max() < 0.25 * ASTRONAUT_FACE[2]
    assert 0.7 < width / ASTRONAUT_FACE[2] < 1.4
    gray = cv2.cvtColor(astronaut, cv2.COLOR_BGR2GRAY)
    assert len(make_detector(name).detect(gray)) == 1


@pytest.mark.parametrize("name", ["yunet", "blazeface"])
def test_learned_detectors_give_eyes_above_nose_above_mouth(name, astronaut) -> None:
    face = detect_faces(make_detector(name), astronaut)[0]
    right_eye, left_eye, nose = face.landmarks[:3]
    mouth_y = face.landmarks[3:5, 1].mean() if name == "yunet" else face.landmarks[3, 1]
    assert right_eye[0] < nose[0] < left_eye[0]  # the subject's right eye is on the image's left
    assert max(right_eye[1], left_eye[1]) < nose[1] < mouth_y
    x, y, w, h = face.box
    assert all(x - 0.1 * w <= px <= x + 1.1 * w and y - 0.1 * h <= py <= y + 1.1 * h for px, py in face.landmarks[:4])
    assert 0.5 <= face.score <= 1.0


@pytest.mark.parametrize("name", FINDERS)
def test_no_face_is_no_detection(name) -> None:
    detector = make_detector(name)
    noise = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    assert detector.detect(np.zeros((480, 640, 3), np.uint8)) == []
    assert detector.detect(noise) == []
    for height, width in ((60, 2200), (32, 640), (640, 20), (5, 5)) * 3:  # thin: YuNet's input is padded
        assert detector.detect(np.full((height, width, 3), 90, np.uint8)) == []


@pytest.mark.parametrize("name", FINDERS)
def test_images_too_thin_to_hold_a_face_are_no_face(name) -> None:
    """#29.6: 1300x1, 1x4000 and 20000x1 images made cv2.resize fail (a 0-pixel side after downscaling)."""
    detector = make_detector(name)
    for height, width in ((1, 1300), (4000, 1), (1, 20000), (20, 20000), (13, 8000), (7, 7), (1, 1)):
        for image in (np.full((height, width, 3), 90, np.uint8), np.full((height, width), 90, np.uint8)):
            assert detect_faces(detector, image) == []


def test_learned_detectors_keep_small_faces_unless_a_min_face_is_asked(astronaut) -> None:
    small = cv2.resize(astronaut, None, fx=0.2, fy=0.2, interpolation=cv2.INTER_AREA)  # a face of about 18 px
    frame = np.full((480, 640, 3), 120, np.uint8)
    frame[100 : 100 + small.shape[0], 100 : 100 + small.shape[1]] = small
    assert detectors.DETECTORS["haar"].min_face == detectors.HAAR_MIN_FACE
    assert len(make_detector("yunet").detect(frame)) == 1
    assert make_detector("yunet", min_face=32).detect(frame) == []


def test_downscaled_detection_maps_faces_back(astronaut) -> None:
    big = cv2.resize(astronaut, None, fx=3, fy=3, interpolation=cv2.INTER_LINEAR)
    face = detect_faces(make_detector("yunet", max_side=640), big)[0]
    assert np.abs(centre(face.box) / 3 - centre(ASTRONAUT_FACE)).max() < 0.2 * ASTRONAUT_FACE[2]
    assert np.abs(face.landmarks[0] / 3 - (200, 102)).max() < 8


@pytest.mark.parametrize(
    ("build", "shipped"),
    [(YuNetDetector, detectors.YUNET_MODEL), (BlazeFaceDetector, detectors.BLAZEFACE_MODEL)],
)
def test_a_corrupt_or_truncated_detector_file_is_a_model_load_error(build, shipped, tmp_path) -> None:
    truncated = tmp_path / f"truncated{shipped.suffix}"
    truncated.write_bytes(shipped.read_bytes()[: shipped.stat().st_size // 3])
    garbage = tmp_path / f"garbage{shipped.suffix}"
    garbage.write_bytes(b"\x00not a model" * 50)
    for path in (truncated, garbage, tmp_path / "missing"):
        with pytest.raises(ModelLoadError, match=str(path.name)):
            build(path)


@pytest.mark.parametrize("name", ["haar", "none"])
def test_a_model_path_for_a_detector_without_a_model_file_is_refused(name) -> None:
    only = "only for: yunet, blazeface$"
    with pytest.raises(OptionError, match=f"detector '{name}' takes no detector model file .*{only}"):
        make_detector(name, model_path=detectors.YUNET_MODEL)
    assert make_detector(name, model_path=None).detect(np.zeros((80, 80, 3), np.uint8)) is not None


def onnx_model(path: Path, outputs: dict[str, tuple[int, ...]]) -> Path:
    """An ONNX model of a 1x3xHxW input whose named outputs are reshaped slices of it (shapes for 64x64)."""
    pytest.importorskip("onnx", reason="the onnx package builds the stand-in model")
    from onnx import TensorProto, helper

    nodes, infos, inits = [helper.make_node("Flatten", ["input"], ["flat"], axis=0)], [], []
    for name, shape in outputs.items():
        size = int(np.prod(shape))
        inits += [helper.make_tensor(f"{name}_end", TensorProto.INT64, [1], [size])]
        inits += [helper.make_tensor(f"{name}_shape", TensorProto.INT64, [len(shape)], list(shape))]
        nodes.append(helper.make_node("Slice", ["flat", "zero", f"{name}_end", "one"], [f"{name}_slice"]))
        nodes.append(helper.make_node("Reshape", [f"{name}_slice", f"{name}_shape"], [name]))
        infos.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape)))
    inits += [
        helper.make_tensor("zero", TensorProto.INT64, [1], [0]),
        helper.make_tensor("one", TensorProto.INT64, [1], [1]),
    ]
    graph = helper.make_graph(
        nodes, "stand_in", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 64, 64])], infos, inits
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path.write_bytes(model.SerializeToString())
    return path


def test_an_onnx_that_is_not_yunet_is_refused_at_load_naming_the_file(tmp_path, capfd) -> None:
    """#29.10: cv2.FaceDetectorYN takes any ONNX file; another model then failed on every image."""
    other = onnx_model(tmp_path / "classifier.onnx", {"logits": (1, 7)})
    with pytest.raises(ModelLoadError, match=r"classifier.onnx: not a YuNet 2023mar face detector model \(expected"):
        make_detector("yunet", model_path=other)
    # YuNet's output names with other shapes (an older or re-exported model) are refused too
    names = {name: (1, 3, 8) for name in detectors.YUNET_OUTPUTS}
    renamed = onnx_model(tmp_path / "lookalike.onnx", names)
    with pytest.raises(ModelLoadError, match=r"lookalike.onnx: .*YuNet's names but not its shapes"):
        make_detector("yunet", model_path=renamed)
    assert capfd.readouterr().err == ""  # OpenCV's importer says nothing of its own either
    assert make_detector("yunet", model_path=detectors.YUNET_MODEL).detect(np.zeros((80, 80, 3), np.uint8)) == []


def test_a_tflite_that_is_not_blazeface_is_refused(tiny_int8_model) -> None:
    with pytest.raises(ModelLoadError, match="not a BlazeFace short-range model"):
        BlazeFaceDetector(tiny_int8_model)


def test_blazeface_anchors_and_decoding() -> None:
    anchors = blazeface.ssd_anchors()
    assert anchors.shape == (blazeface.NUM_ANCHORS, 2) and anchors.min() > 0 and anchors.max() < 1
    assert np.allclose(anchors[0], (0.5 / 16, 0.5 / 16)) and np.allclose(anchors[-1], (7.5 / 8, 7.5 / 8))
    regressors = np.zeros((1, 16), np.float32)
    regressors[0, 2:4] = 32.0  # a 32 px box at the anchor, keypoints 8 px right of it
    regressors[0, 4::2] = 8.0
    row = blazeface.decode(regressors, np.array([[0.5, 0.5]], np.float32))[0]
    assert np.allclose(row[:4], (0.375, 0.375, 0.625, 0.625))
    assert np.allclose(row[4::2], 0.5625) and np.allclose(row[5::2], 0.5)


def test_blazeface_model_gives_x_y_w_h_boxes_scores_and_keypoints(astronaut) -> None:
    model = blazeface.BlazeFaceModel(detectors.BLAZEFACE_MODEL)
    found = model(astronaut)
    assert found.boxes.shape == (1, 4) and found.scores.shape == (1,) and found.landmarks.shape == (1, 6, 2)
    assert np.abs(found.boxes[0] - ASTRONAUT_FACE).max() < 0.25 * ASTRONAUT_FACE[2]  # a width, not a corner
    nothing = model(np.zeros((480, 640, 3), np.uint8))
    assert (nothing.boxes.shape, nothing.scores.shape, nothing.landmarks.shape) == ((0, 4), (0,), (0, 6, 2))


def test_iou_of_one_box_against_many_is_each_pair() -> None:
    """One IoU for the tracker's pairs and BlazeFace's NMS: broadcast over boxes, 0 for boxes with no area."""
    box = (0, 0, 10, 10)
    others = np.array([(0, 0, 10, 10), (5, 0, 10, 10), (20, 20, 5, 5), (2, 2, 0, 0), (2, 2, 5, 5)])
    expected = [1.0, 50 / 150, 0.0, 0.0, 25 / 100]
    np.testing.assert_allclose(detectors.iou(box, others), expected)
    assert [float(detectors.iou(box, other)) for other in others] == pytest.approx(expected)
    assert float(detectors.iou((0, 0, 0, 0), (0, 0, 0, 0))) == 0.0


def test_weighted_nms_merges_one_face_and_keeps_two() -> None:
    rows = np.zeros((3, 16))
    rows[:, :4] = [(0.1, 0.1, 0.3, 0.3), (0.12, 0.1, 0.32, 0.3), (0.6, 0.6, 0.8, 0.8)]
    kept = blazeface.weighted_nms(rows, np.array([0.9, 0.9, 0.7]), 0.3)
    assert [score for _, score in kept] == [0.9, 0.7]
    assert np.allclose(kept[0][0][:4], (0.11, 0.1, 0.31, 0.3))


def test_every_detector_setting_is_reachable_through_the_recognizer_options(tiny_int8_model) -> None:
    options = RecognizerOptions(tiny_int8_model, "yunet", detector_score=0.4, detect_size=None, max_side=320)
    detector = EmotionRecognizer.create_from_options(options).detector
    assert detector._net.getScoreThreshold() == pytest.approx(0.4) and detector.max_side == 320
    assert make_detector("yunet")._net.getScoreThreshold() == pytest.approx(detectors.YUNET_SCORE)
    blaze = RecognizerOptions(
        tiny_int8_model, "blazeface", detector_model=detectors.BLAZEFACE_MODEL, detector_score=0.3
    )
    assert EmotionRecognizer.create_from_options(blaze).detector._model.score_threshold == pytest.approx(0.3)
    with pytest.raises(ModelLoadError, match="not a BlazeFace short-range model"):
        make_detector("blazeface", model_path=tiny_int8_model)  # --detector-model reaches BlazeFace too
    with pytest.raises(OptionError, match=r"detector 'haar' has no score threshold to set; .*: yunet, blazeface"):
        make_detector("haar", score_threshold=0.5)
    for bad in (0, 1, 1.5, float("nan"), "0.5", True):
        with pytest.raises(OptionError, match="detector_score must be a number between 0 and 1"):
            RecognizerOptions(detector_score=bad)
