"""``detect_size``: detection runs on a copy of that long side, and faces come back in the image's pixels."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from feredge.edge import detectors
from feredge.edge.detectors import Found, detect_faces, iou, make_detector
from feredge.edge.errors import OptionError

pytestmark = pytest.mark.edge  # the detector models are package data

ASTRONAUT = Path("/work/shared/data/examples/astronaut.png")  # public domain, 512x512, one face


class Spy(detectors._ScaledDetector):
    """Records the size of the copy it is given and finds one face at its centre, 1/4 of its width."""

    def __init__(self, **sizes) -> None:
        super().__init__(0, **sizes)
        self.seen: list[tuple[int, ...]] = []

    def _detect(self, image: np.ndarray, min_size: int) -> Found:
        self.seen.append(image.shape[:2])
        height, width = image.shape[:2]
        side = width / 4
        box = [width / 2 - side / 2, height / 2 - side / 2, side, side]
        points = np.array([[[width / 2, height / 2]]], np.float64)
        return Found(np.array([box]), np.ones(1), points)


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    if not ASTRONAUT.is_file():
        pytest.skip(f"{ASTRONAUT} not present")
    return cv2.imread(str(ASTRONAUT))


@pytest.mark.parametrize(
    ("sizes", "expected"),
    [
        ({"max_side": 640, "detect_size": 320}, (240, 320)),
        ({"max_side": 640, "detect_size": None}, (480, 640)),  # full resolution
        ({"max_side": 640, "detect_size": 1280}, (480, 640)),  # never upscaled
        ({"max_side": 480, "detect_size": None}, (360, 480)),  # max_side still bounds it
        ({"max_side": 480, "detect_size": 640}, (360, 480)),
    ],
)
def test_detection_runs_on_a_copy_of_the_detect_size(sizes, expected) -> None:
    spy = Spy(**sizes)
    face = detect_faces(spy, np.zeros((480, 640, 3), np.uint8))[0]
    assert spy.seen == [expected]
    # the face at the copy's centre, 1/4 of its width, is the frame's centre and 1/4 of the frame's width
    assert face.box == (240, 160, 160, 160)
    np.testing.assert_allclose(face.landmarks, [[320, 240]])


@pytest.mark.parametrize("name", ["yunet", "haar", "blazeface"])
def test_a_real_face_found_at_a_smaller_detect_size_maps_back_to_the_same_place(name, astronaut) -> None:
    full = detect_faces(make_detector(name, detect_size=None), astronaut)
    small = detect_faces(make_detector(name, detect_size=256), astronaut)
    assert len(full) == len(small) == 1
    assert float(iou(full[0].box, small[0].box)) > 0.7
    if full[0].landmarks is not None:
        assert np.abs(full[0].landmarks - small[0].landmarks).max() < 0.05 * full[0].box[2]


def test_a_small_detect_size_loses_small_faces(astronaut) -> None:
    """What the rule in docs/deploy.md guards against: a 60 px face is 15 px at a quarter of the size."""
    frame = np.full((960, 1280, 3), 90, np.uint8)
    face = cv2.resize(astronaut[40:200, 150:300], (60, 64), interpolation=cv2.INTER_AREA)
    frame[400:464, 600:660] = face
    assert len(make_detector("yunet", max_side=1280, detect_size=None).detect(frame)) == 1
    assert make_detector("yunet", max_side=1280, detect_size=160).detect(frame) == []


def test_make_detector_takes_each_detectors_own_default_unless_told() -> None:
    for name, entry in detectors.DETECTORS.items():
        assert detectors.default_detect_size(name) == entry.detect_size
        if not entry.whole_image:
            assert make_detector(name).detect_size == entry.detect_size
            assert make_detector(name, detect_size=None).detect_size is None
            assert make_detector(name, detect_size=200).detect_size == 200


@pytest.mark.parametrize("bad", [0, 31, -320, 320.0, True, "320", "full"])
def test_a_bad_detect_size_is_an_option_error(bad) -> None:
    with pytest.raises(OptionError, match=r"detect_size must be an int of at least 32 pixels .* or None"):
        make_detector("yunet", detect_size=bad)


def test_an_unknown_detector_has_no_default_detect_size() -> None:
    with pytest.raises(OptionError, match="unknown detector 'nope'"):
        detectors.default_detect_size("nope")


def test_the_recognizer_passes_its_detect_size_to_the_detector(tiny_int8_model) -> None:
    from feredge.edge.recognizer import EmotionRecognizer

    assert EmotionRecognizer(tiny_int8_model).detector.detect_size == detectors.default_detect_size("yunet")
    assert EmotionRecognizer(tiny_int8_model, detect_size=None).detector.detect_size is None
    assert EmotionRecognizer(tiny_int8_model, "haar", detect_size=256).detector.detect_size == 256
    with pytest.raises(OptionError, match="detect_size must be an int"):
        EmotionRecognizer("no such model.tflite", detect_size=0)  # checked before the model is loaded


@pytest.mark.parametrize(
    ("argv", "expected"),
    [([], detectors.DETECTOR_DEFAULT), (["--detect-size", "full"], None), (["--detect-size", "240"], 240)],
)
def test_detect_size_on_the_command_line(argv, expected) -> None:
    import argparse

    from feredge.cli.options import add_recognizer_options, detect_size_argument

    parser = argparse.ArgumentParser()
    add_recognizer_options(parser)
    assert detect_size_argument(parser.parse_args(argv).detect_size) == expected


@pytest.mark.parametrize("text", ["31", "0", "-320", "320.5", "big"])
def test_a_bad_detect_size_on_the_command_line_is_a_usage_error(text, capsys) -> None:
    from feredge.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["predict", "x.jpg", "--detect-size", text])
    assert exit_.value.code == 2
    assert f"expected a whole number >= 32 or 'full', got '{text}'" in capsys.readouterr().err


def test_predict_finds_the_face_at_the_detect_size_asked(capsys) -> None:
    import json

    from feredge.cli import main

    if not ASTRONAUT.is_file():
        pytest.skip(f"{ASTRONAUT} not present")
    boxes = {}
    for size in ("full", "160"):
        assert main(["predict", str(ASTRONAUT), "--json", "--detect-size", size]) == 0
        boxes[size] = json.loads(capsys.readouterr().out.splitlines()[0])["faces"][0]["box"]
    assert float(iou(boxes["full"], boxes["160"])) > 0.7


def test_a_bad_detect_size_is_refused_even_for_the_whole_image_detector() -> None:
    with pytest.raises(OptionError, match="detect_size must be"):
        make_detector("none", detect_size="full")
