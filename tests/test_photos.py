"""``feredge evaluate-photos``: whole photos through detector -> crop -> model, misses counted, reports written."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from feredge import cli
from feredge.benchmarks import groups, photo_run
from feredge.benchmarks.photos import NO_FACE
from feredge.cli.options import EXIT_USER_ERROR
from feredge.edge.detectors import detect_faces, make_detector
from feredge.edge.model import EmotionModel, load_model
from feredge.edge.preprocess import crop_face, preprocess_face

pytestmark = pytest.mark.edge

ASTRONAUT = Path("/work/shared/data/examples/astronaut.png")  # a real photo of one face


@pytest.fixture(scope="module")
def photo_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """happy/ and sad/: the real face, one of them mirrored; neutral/: a blank photo and a noise photo."""
    if not ASTRONAUT.is_file():
        pytest.skip(f"{ASTRONAUT} not present")
    root = tmp_path_factory.mktemp("photos")
    face = cv2.imread(str(ASTRONAUT))
    noise = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    for label, images in {
        "happy": [face],
        "sad": [cv2.flip(face, 1)],
        "neutral": [np.zeros((256, 256, 3), np.uint8), noise],
    }.items():
        (root / label).mkdir()
        for i, image in enumerate(images):
            cv2.imwrite(str(root / label / f"{i}.png"), image)
    (root / "happy" / "notes.txt").write_text("not an image")
    return root


def test_evaluate_photos_reports_found_rate_accuracy_f1_and_confusion(photo_set, tiny_int8_model, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["evaluate-photos", str(photo_set), "--models", str(tiny_int8_model), "--detectors", "haar", "yunet"]
    argv += ["--margins", "0", "0.1", "--offsets", "0", "--align", "--frames", "1", "--out", str(out)]
    assert cli.main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["photos"]["count"] == 4 and results["photos"]["classes"] == {"happy": 1, "neutral": 2, "sad": 1}
    rows = results["rows"]
    assert {(r["detector"], r["framing"]) for r in rows} == {
        ("haar", "box m+0.00 o+0.00"),
        ("haar", "box m+0.10 o+0.00"),
        ("yunet", "box m+0.00 o+0.00"),
        ("yunet", "box m+0.10 o+0.00"),
        ("yunet", "align m+0.00 o+0.00"),
        ("yunet", "align m+0.10 o+0.00"),
    }
    for row in rows:
        assert row["photos"] == 4 and row["found"] == 2 and row["found_rate"] == 0.5
        assert row["predicted"][NO_FACE] == 2  # the blank and the noise photo are misses ...
        assert row["truth"]["neutral"] == 2 and row["predicted"]["neutral"] == 0  # ... and wrong
        assert row["accuracy"] <= 0.5 and 0.0 <= row["macro_f1"] <= 1.0
        assert set(row["f1"]) >= {"happy", "sad", "neutral"}
        matrix = np.array(row["confusion_matrix"])
        assert matrix.shape == (len(row["labels"]), len(row["labels"])) and matrix.sum() == 4
        assert matrix[row["labels"].index("neutral"), row["labels"].index(NO_FACE)] == 2
    assert [r["default"] for r in rows if r["detector"] == "haar"] == [False, True]  # metadata margin 0.1
    markdown = (out / "results.md").read_text()
    assert f"feredge evaluate-photos {photo_set} --models {tiny_int8_model} --detectors haar yunet" in markdown
    assert results["models"]["int8"] == {"photometric": "none", "crop_margin": 0.1, "framing": {}}
    assert "model int8: photometric none, crop margin 0.1" in markdown
    assert "Per-class F1" in markdown and "no face" in markdown and "Confusion matrix" in markdown
    printed = capsys.readouterr().out
    assert "Best framing per model and detector" in printed and "2/4" in printed


def test_evaluate_photos_on_a_missing_folder_is_one_clear_line(tmp_path, capsys):
    missing = tmp_path / "nope"
    code = cli.main(["evaluate-photos", str(missing), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == EXIT_USER_ERROR
    assert err == f"feredge evaluate-photos: error: {missing}: photo folder not found"


def test_evaluate_photos_without_images_is_one_clear_line(tmp_path, capsys):
    (tmp_path / "happy").mkdir()
    assert cli.main(["evaluate-photos", str(tmp_path), "--out", str(tmp_path / "out")]) == EXIT_USER_ERROR
    assert "no images in class folders" in capsys.readouterr().err


def test_photo_classes_the_model_does_not_know_are_one_clear_line(tiny_int8_model, tmp_path, capsys):
    (tmp_path / "joy").mkdir()
    cv2.imwrite(str(tmp_path / "joy" / "0.png"), np.zeros((64, 64, 3), np.uint8))
    argv = ["evaluate-photos", str(tmp_path), "--models", str(tiny_int8_model), "--detectors", "yunet"]
    assert cli.main([*argv, "--margins", "0", "--out", str(tmp_path / "out")]) == EXIT_USER_ERROR
    assert capsys.readouterr().err.strip() == (
        "feredge evaluate-photos: error: no photo class folder is among the labels of model int8 "
        "(angry, disgust, fear, happy, sad, surprise, neutral); found joy"
    )


def test_unreadable_photos_and_unknown_classes_are_reported(photo_set, tiny_int8_model, tmp_path):
    data, out = tmp_path / "photos", tmp_path / "out"
    for label in ("happy", "joy"):
        (data / label).mkdir(parents=True)
        (data / label / "0.png").write_bytes((photo_set / "happy" / "0.png").read_bytes())
    (data / "happy" / "broken.png").write_bytes(b"not a png")
    argv = ["evaluate-photos", str(data), "--models", str(tiny_int8_model), "--detectors", "yunet"]
    assert cli.main([*argv, "--margins", "0", "--frames", "1", "--out", str(out)]) == 0
    photos = json.loads((out / "results.json").read_text())["photos"]
    assert photos["count"] == 2 and photos["left_out"] == {"int8": {"joy": 1}}
    assert len(photos["unreadable"]) == 1 and "broken.png: not a readable image" in photos["unreadable"][0]
    markdown = (out / "results.md").read_text()
    assert "- unreadable, not scored: 1 (" in markdown and "broken.png" in markdown
    assert "- left out of int8's rows (classes it does not know): 1 (joy 1)" in markdown


@pytest.mark.parametrize(
    ("option", "value", "expected"),
    [
        ("--margins", "nan", "a number from -0.3 to 1"),
        ("--margins", "5", "a number from -0.3 to 1"),
        ("--margins", "inf", "a number from -0.3 to 1"),
        ("--offsets", "-3", "a number from -0.3 to 0.3"),
    ],
)
def test_framings_outside_the_metadata_range_are_usage_errors(option, value, expected, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["evaluate-photos", str(tmp_path), option, "0", value])
    assert exit_info.value.code == 2
    assert f"argument {option}: expected {expected}, got {value!r}" in capsys.readouterr().err


def test_evaluate_photos_help_shows_the_framing_and_timing_defaults(capsys):
    with pytest.raises(SystemExit):
        cli.main(["evaluate-photos", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: [-0.2, -0.1, 0.0, 0.1, 0.2, 0.3])" in text and "crop margins to try" in text
    assert "0 skips them (default: 0)" in text and "one-face frames (default: 50)" in text


def test_group_proxy_matching_counts_hits_and_false_boxes() -> None:
    truth = [np.array([0, 0, 100, 100]), np.array([200, 200, 60, 60])]
    found = [(10, 5, 95, 95), (400, 400, 50, 50), (0, 0, 90, 100)]
    hit, false = groups.match(truth, found)
    assert hit == [True, False] and false == 2  # one box per face: the second box on face 1 is false


def test_group_canvases_hold_faces_where_their_boxes_say(photo_set) -> None:
    face = cv2.imread(str(photo_set / "happy" / "0.png"))
    source = groups.Source(face, np.array([178.0, 63.0, 90.0, 113.0]))
    canvas, truth = groups.compose([source], np.random.default_rng(0), max_faces=3)
    assert canvas.shape == (480, 640, 3) and 1 <= len(truth) <= 3
    hit, _ = groups.match(truth, make_detector("yunet").detect(canvas))
    assert sum(hit) >= len(truth) - 1


def test_fers_detector_gives_its_boxes_as_detections_through_the_shared_fallback(photo_set) -> None:
    from feredge.benchmarks.fer_pipeline import PeerHaar

    detector = PeerHaar(Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml")
    image = cv2.imread(str(photo_set / "happy" / "0.png"))
    faces = detect_faces(detector, image)
    assert faces and [face.box for face in faces] == detector.detect(image)  # ints, largest first
    assert all(face.score == 1.0 and face.landmarks is None for face in faces)


class Recording:
    """A runner that keeps every batch it is given, in front of the real one."""

    def __init__(self, runner) -> None:
        self.runner, self.batches = runner, []
        self.input_shape, self.num_outputs, self.backend = runner.input_shape, runner.num_outputs, runner.backend

    def run(self, batch: np.ndarray) -> np.ndarray:
        self.batches.append(batch.copy())
        return self.runner.run(batch)


def test_each_model_is_evaluated_through_its_own_metadata(photo_set, tiny_int8_model, monkeypatch) -> None:
    base = load_model(tiny_int8_model, threads=1)
    clahe_meta = base.metadata.replace(photometric="clahe", framing={"yunet": {"margin": 0.2, "offset": 0.05}})
    models = {
        "plain": EmotionModel(Recording(base.runner), base.metadata, "plain"),
        "clahe": EmotionModel(Recording(base.runner), clahe_meta, "clahe"),
    }
    monkeypatch.setattr(photo_run, "_load_models", lambda settings: models)
    settings = photo_run.PhotoSettings(str(photo_set), detectors=("yunet",), margins=(0.0,), frames=1)
    results = photo_run.run_photos(settings)
    framings = {(r["model"], r["margin"], r["offset"], r["default"]) for r in results["rows"]}
    assert ("clahe", 0.2, 0.05, True) in framings and ("clahe", 0.1, 0.0, False) in framings
    assert ("plain", 0.1, 0.0, True) in framings and ("plain", 0.2, 0.05, False) in framings
    assert results["models"]["clahe"]["photometric"] == "clahe"
    plain, clahe = models["plain"].runner.batches[0], models["clahe"].runner.batches[0]  # margin 0, same crops
    assert plain.shape == clahe.shape and not np.allclose(plain, clahe)
    face = detect_faces(make_detector("yunet"), cv2.imread(str(photo_set / "happy" / "0.png")))[0]
    crop = crop_face(cv2.imread(str(photo_set / "happy" / "0.png")), face.box, 0.0)
    assert np.allclose(clahe[0], preprocess_face(crop, clahe_meta.preprocess_spec()))


def test_fer_face_crop_is_fers_crop_of_the_detections_box():
    from feredge.benchmarks.fer_pipeline import fer_crop, fer_face_crop
    from feredge.edge.detectors import Detection

    image = np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    box = (30, 20, 40, 56)
    crop = fer_face_crop(image, Detection(box))
    assert np.array_equal(crop, fer_crop(image, box)) and crop.shape == (76, 76)
