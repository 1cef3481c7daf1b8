"""EmotionRecognizer and the detectors: inputs of every kind, batching, boxes, timings, bad images."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from feredge.edge import detectors
from feredge.edge.cpu import MAX_THREADS
from feredge.edge.decode import ScaledImage
from feredge.edge.detectors import HaarDetector, WholeImage, YuNetDetector, make_detector
from feredge.edge.errors import ImageError, ModelLoadError, OptionError
from feredge.edge.labels import FER2013
from feredge.edge.model import load_model
from feredge.edge.options import RecognizerOptions, VideoOptions
from feredge.edge.recognizer import EmotionRecognizer, Face, reading_order

pytestmark = pytest.mark.edge  # needs only `pip install .`: .ci/run also runs it in an edge-only venv

YUNET = detectors.YUNET_MODEL


def overlaps(found, expected, tolerance: float = 0.35) -> bool:
    """Box centre within ``tolerance`` of the expected side, and similar size."""
    fx, fy, fw, fh = found
    ex, ey, ew, eh = expected
    centre = abs(fx + fw / 2 - ex - ew / 2) + abs(fy + fh / 2 - ey - eh / 2)
    return centre < tolerance * ew and 0.4 * ew < fw < 1.6 * ew


def matches(boxes, placed) -> bool:
    return len(boxes) == len(placed) and all(any(overlaps(b, p) for b in boxes) for p in placed)


@pytest.fixture(scope="module")
def recognizer(tiny_int8_model):
    return EmotionRecognizer(tiny_int8_model, detector="haar", threads=1)


@pytest.fixture(scope="module")
def half_face() -> np.ndarray:
    """A crop whose right half is bright: the tiny model answers 'disgust'."""
    crop = np.zeros((96, 96, 3), np.uint8)
    crop[:, 48:] = 255
    return crop


# --- detection ---


def test_haar_finds_both_faces_of_a_scene(face_scene):
    scene, placed = face_scene
    boxes = HaarDetector().detect(scene)
    assert matches(boxes, placed)
    assert boxes[0][2] >= boxes[1][2], "largest face first"


def test_yunet_finds_both_faces_of_a_scene(face_scene):
    scene, placed = face_scene
    assert matches(YuNetDetector(YUNET).detect(scene), placed)
    assert matches(YuNetDetector(YUNET).detect(cv2.cvtColor(scene, cv2.COLOR_BGR2GRAY)), placed)


def test_no_face_is_an_empty_list(recognizer):
    assert recognizer.predict(np.full((240, 320, 3), 128, np.uint8)) == []
    assert recognizer.detect_emotions(np.zeros((50, 50), np.uint8)) == []


def test_min_face_drops_small_faces(face_scene):
    scene, placed = face_scene
    assert len(HaarDetector(min_face=20).detect(scene)) == 2
    boxes = HaarDetector(min_face=225).detect(scene)
    assert len(boxes) == 1 and overlaps(boxes[0], placed[1])


def test_large_frame_is_downscaled_for_detection_and_boxes_map_back(face_scene):
    scene, placed = face_scene
    big = cv2.resize(scene, None, fx=4, fy=4, interpolation=cv2.INTER_LINEAR)
    seen = []

    class Spy(HaarDetector):
        def _detect(self, image, min_size):
            seen.append(image.shape)
            return super()._detect(image, min_size)

    boxes = Spy(max_side=640).detect(big)
    assert seen == [(480, 640, 3)]
    assert matches(boxes, [tuple(4 * v for v in box) for box in placed])


def test_detector_none_uses_the_whole_image(tiny_int8_model, half_face):
    crop_recognizer = EmotionRecognizer(tiny_int8_model, detector="none")
    (face,) = crop_recognizer.predict(half_face)
    assert face.box == (0, 0, 96, 96) and face.label == "disgust"
    assert isinstance(make_detector("none"), WholeImage)
    with pytest.raises(ValueError, match="unknown detector"):
        make_detector("mtcnn")


# --- recognizer API ---


def test_predict_returns_faces_with_scores(recognizer, face_scene):
    scene, placed = face_scene
    faces = recognizer.predict(scene)
    assert matches([f.box for f in faces], placed)
    for face in faces:
        assert isinstance(face, Face) and all(isinstance(v, int) for v in face.box)
        assert set(face.scores) == set(FER2013)
        assert face.label == max(face.scores, key=face.scores.get)
        assert face.confidence == face.scores[face.label]
        assert sum(face.scores.values()) == pytest.approx(1.0, abs=1e-3)


def test_fer_compatible_view(recognizer, face_scene):
    scene, _ = face_scene
    records = recognizer.detect_emotions(scene)
    assert [r["box"] for r in records] == [list(f.box) for f in recognizer.predict(scene)]
    assert all(set(r) == {"box", "emotions"} and set(r["emotions"]) == set(FER2013) for r in records)


def test_all_faces_of_all_images_go_through_one_model_call(tiny_int8_model, face_scene):
    scene, _ = face_scene
    recognizer = EmotionRecognizer(tiny_int8_model)
    sizes = []
    run = recognizer.model.runner.run
    recognizer.model.runner.run = lambda batch: sizes.append(len(batch)) or run(batch)
    results = recognizer.predict_batch([scene, np.full((100, 100), 50, np.uint8), scene])
    assert [len(faces) for faces in results] == [2, 0, 2]
    assert sizes == [4]
    assert results[0] == recognizer.predict(scene)
    assert sizes == [4, 2]


def test_given_boxes_skip_detection(recognizer, half_face):
    image = np.zeros((200, 300, 3), np.uint8)
    image[50:146, 100:196] = half_face
    (face,) = recognizer.predict(image, boxes=[(100, 50, 96, 96)])
    assert face.box == (100, 50, 96, 96) and face.label == "disgust"
    assert recognizer.predict(image, boxes=[]) == []


def test_a_call_returns_its_own_timings_and_image_size(recognizer, face_scene):
    scene, _ = face_scene
    result = recognizer.recognize(scene)
    other = recognizer.recognize(np.full((100, 120), 50, np.uint8))  # a later call changes nothing of the first
    assert result.faces == recognizer.predict(scene) and other.faces == []
    assert result.image_size == (scene.shape[1], scene.shape[0]) and other.image_size == (120, 100)
    assert other.timings.faces == 0 and not hasattr(recognizer, "timings")
    record = result.to_dict()
    assert set(record) == {"image_size", "faces", "timings"} and record["image_size"] == list(result.image_size)
    assert record["timings"] == {key: round(value, 3) for key, value in result.timings.as_dict().items()}
    timings = result.timings.as_dict()
    assert set(timings) == {"decode_ms", "detect_ms", "preprocess_ms", "infer_ms", "faces", "total_ms"}
    assert all(timings[k] > 0 for k in ("detect_ms", "preprocess_ms", "infer_ms"))
    assert timings["faces"] == 2
    assert timings["total_ms"] == pytest.approx(
        sum(timings[k] for k in ("decode_ms", "detect_ms", "preprocess_ms", "infer_ms"))
    )


def test_model_object_can_be_shared(tiny_int8_model):
    model = load_model(tiny_int8_model)
    assert EmotionRecognizer(model, detector="none").model is model


def test_a_detector_object_keeps_its_registry_name_for_the_framing(tiny_int8_model):
    """A recognizer given a detector object crops with the model's framing for that detector."""
    for name in ("haar", "yunet", "blazeface", "none"):  # the built-in ones
        assert detectors.detector_name(make_detector(name)) == name
    assert detectors.detector_name(HaarDetector(min_face=20)) == "haar"
    model = load_model(tiny_int8_model)
    assert EmotionRecognizer(model, detector=HaarDetector(min_face=20)).detector_name == "haar"
    assert EmotionRecognizer(model, detector=WholeImage()).detector_name == "none"


# --- inputs of every kind ---


def _encoded(image: np.ndarray, suffix: str) -> bytes:
    ok, data = cv2.imencode(suffix, image)
    assert ok
    return data.tobytes()


@pytest.mark.parametrize(
    "convert",
    [
        pytest.param(lambda bgr: bgr, id="bgr"),
        pytest.param(lambda bgr: cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY), id="gray"),
        pytest.param(lambda bgr: cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA), id="bgra"),
        pytest.param(lambda bgr: bgr.astype(np.uint16) * 257, id="16-bit"),
    ],
)
@pytest.mark.parametrize("form", ["array", "png-path", "png-bytes"])
def test_every_input_form_and_pixel_layout_works(recognizer, face_scene, tmp_path, convert, form):
    scene, placed = face_scene
    image = convert(scene)
    if form == "array":
        source = image
    else:
        data = _encoded(image, ".png")
        source = data if form == "png-bytes" else tmp_path / "in.png"
        if form == "png-path":
            source.write_bytes(data)
    faces = recognizer.predict(source)
    assert matches([f.box for f in faces], placed)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (None, "file not found"),
        (lambda: b"", "empty"),
        (lambda: b"this is just text\n" * 20, "not a readable image"),
        (lambda: _encoded(np.full((64, 64, 3), 99, np.uint8), ".jpg")[:-300], "truncated"),
    ],
    ids=["missing", "zero-bytes", "text-as-jpg", "truncated-jpeg"],
)
def test_bad_images_raise_image_error_naming_the_file(recognizer, tmp_path, make, message):
    path = tmp_path / "photo.jpg"
    if make is not None:
        path.write_bytes(make())
    with pytest.raises(ImageError, match=message) as info:
        recognizer.predict(path)
    assert str(path) in str(info.value)


# --- YuNet model: shipped or an explicit path ---


def test_yunet_missing_explicit_path(tmp_path):
    with pytest.raises(ModelLoadError, match="detector model file not found"):
        YuNetDetector(tmp_path / "nope.onnx")


def test_yunet_bad_model_file(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"nope")
    with pytest.raises(ModelLoadError, match=r"bad.onnx: not a usable YuNet"):
        YuNetDetector(bad)


def test_yunet_ships_with_the_package(face_scene):
    scene, placed = face_scene
    assert YUNET == detectors.YUNET_MODEL and (YUNET.parent / "LICENSE.yunet").is_file()
    assert matches(make_detector("yunet").detect(scene), placed)


# --- bad values from library callers are typed errors ---


def test_bad_values_raise_option_errors(tiny_int8_model, tmp_path):
    from feredge.edge.errors import FeredgeError, OptionError
    from feredge.edge.video import process_video

    assert issubclass(OptionError, FeredgeError) and issubclass(OptionError, ValueError)
    with pytest.raises(OptionError, match="unknown detector 'mtcnn'; choose from haar, yunet, blazeface, none"):
        make_detector("mtcnn")
    with pytest.raises(OptionError, match="min_face must be >= 0"):
        EmotionRecognizer(tiny_int8_model, min_face=-1)
    with pytest.raises(OptionError, match="max_side must be >= 1"):
        HaarDetector(max_side=0)
    for threads in (0, -1):
        with pytest.raises(OptionError, match="threads must be >= 1"):
            load_model(tiny_int8_model, threads=threads)
    recognizer = EmotionRecognizer(tiny_int8_model, threads=1)
    missing = str(tmp_path / "never-opened.mp4")
    with pytest.raises(OptionError, match="detect_every must be >= 1"):
        process_video(recognizer, missing, VideoOptions(detect_every=0))
    with pytest.raises(OptionError, match="smoothing alpha must be in"):
        process_video(recognizer, missing, VideoOptions(smoothing=0.0))
    with pytest.raises(OptionError, match="max_frames must be >= 1"):
        process_video(recognizer, missing, VideoOptions(max_frames=0))


def test_a_registered_detector_is_offered_and_built_by_name(monkeypatch):
    class Fixed:
        def detect(self, image):
            return [(1, 2, 3, 4)]

    monkeypatch.setattr(detectors, "DETECTORS", dict(detectors.DETECTORS))
    detectors.register_detector("fixed", "a test detector", landmarks=True)(lambda *sizes: Fixed())
    assert detectors.DETECTORS["fixed"].landmarks and "fixed" in detectors.detector_names()
    assert make_detector("fixed").detect(np.zeros((8, 8), np.uint8)) == [(1, 2, 3, 4)]
    assert "none" not in detectors.detector_names(finds_faces=True)
    with pytest.raises(ValueError, match="registered twice"):
        detectors.register_detector("fixed", "again")(lambda *sizes: Fixed())
    with pytest.raises(OptionError, match="unknown detector 'nope'"):
        make_detector("nope")


# --- detector facts and reading order ---


def _detection(box, score=1.0, landmarks=None):
    return detectors.Detection(box, score, None if landmarks is None else np.asarray(landmarks, np.float32))


def test_reading_order_is_rows_top_to_bottom_then_left_to_right():
    # two rows; on each the right face sits a few pixels higher than the left one, and the detector's own
    # order (largest first) is neither
    top_left, top_right = _detection((10, 14, 50, 50)), _detection((200, 10, 40, 40))
    low_left, low_right = _detection((12, 150, 60, 60)), _detection((180, 146, 30, 30))
    shuffled = [low_left, top_left, top_right, low_right]
    assert reading_order(shuffled) == [top_left, top_right, low_left, low_right]
    # a face whose height overlaps the row by less than half its own starts a new row, even further left
    below = _detection((0, 40, 20, 60))  # overlaps the row of top_right (10..50) by 10 < 40 / 2
    assert reading_order([top_right, below, top_left]) == [top_left, top_right, below]
    assert reading_order([]) == []


class _Finder:
    """A detector with its own findings: two faces, the larger one lower and listed first, with scores
    and landmarks in the pixels of the image it was given."""

    registry_name = "finder"

    def detect_faces(self, image):
        return [
            _detection((40, 100, 60, 60), 0.9, [[50.0, 110.0], [80.0, 112.5]]),
            _detection((10, 10, 40, 40), 0.75, [[20.0, 20.0], [30.0, 21.0]]),
        ]

    def detect(self, image):
        return [face.box for face in self.detect_faces(image)]


def test_faces_carry_the_detectors_score_and_landmarks_in_reading_order(tiny_int8_model):
    recognizer = EmotionRecognizer(tiny_int8_model, detector=_Finder(), threads=1)
    image = np.full((200, 200, 3), 90, np.uint8)
    faces = recognizer.predict(image)
    assert [face.box for face in faces] == [(10, 10, 40, 40), (40, 100, 60, 60)]
    assert [face.detector_score for face in faces] == [0.75, 0.9]
    assert faces[0].landmarks == ((20.0, 20.0), (30.0, 21.0))
    record = faces[1].to_dict()
    assert record["detector_score"] == 0.9 and record["landmarks"] == [[50.0, 110.0], [80.0, 112.5]]
    assert [r["box"] for r in recognizer.detect_emotions(image)] == [[10, 10, 40, 40], [40, 100, 60, 60]]
    assert all(set(r) == {"box", "emotions"} for r in recognizer.detect_emotions(image))  # fer's shape


def test_landmarks_of_a_reduced_decode_are_in_original_pixels(tiny_int8_model):
    recognizer = EmotionRecognizer(tiny_int8_model, detector=_Finder(), threads=1)
    image = np.full((200, 200, 3), 90, np.uint8)
    faces = recognizer.predict(ScaledImage(image, (400, 400)))  # decoded at 1/2
    assert [face.box for face in faces] == [(20, 20, 80, 80), (80, 200, 120, 120)]
    assert faces[0].landmarks == ((40.0, 40.0), (60.0, 42.0))


def test_faces_without_detector_facts_have_none_and_given_boxes_keep_their_order(recognizer, half_face):
    whole = EmotionRecognizer(recognizer.model, detector="none").predict(half_face)
    assert whole[0].detector_score is None and whole[0].landmarks is None
    assert set(whole[0].to_dict()) == {"box", "label", "confidence", "scores"}
    image = np.zeros((200, 300, 3), np.uint8)
    boxes = [(150, 100, 96, 96), (0, 0, 96, 96)]
    given = recognizer.predict(image, boxes=boxes)
    assert [face.box for face in given] == boxes and given[0].detector_score is None


def test_options_are_checked_once_made_and_build_the_same_recognizer(tiny_int8_model):
    options = RecognizerOptions(tiny_int8_model, "haar", np.int64(1), labels=iter(FER2013), min_face=np.int32(20))
    assert type(options.threads) is int and options.labels == tuple(FER2013) and type(options.min_face) is int
    recognizer = EmotionRecognizer.create_from_options(options)
    assert recognizer.options is options and recognizer.threads == 1 and recognizer.detector.min_face == 20
    keywords = EmotionRecognizer(tiny_int8_model, detector="haar", threads=1, labels=FER2013, min_face=20)
    assert keywords.options == options
    with pytest.raises(OptionError, match=r"threads must be >= 1 \(an int or None, at most \d+"):
        RecognizerOptions(threads=MAX_THREADS + 1)  # checked before any model is looked for
    with pytest.raises(OptionError, match=r"min_confidence must be between 0 and 1"):
        RecognizerOptions(min_confidence=2)
