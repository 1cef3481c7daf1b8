"""Peers in ``feredge bench`` and ``evaluate-photos``: facex's own preprocessing reproduced exactly, a peer that
is not installed skipped with its install line, and FER+ data scored on the annotators' labels.

facex's import needs TensorFlow and scikit-image, so the benchmark only reads its files; its resize
(``skimage.transform.resize(crop, (200, 200, 3))``) is reproduced in numpy and checked here against values
scikit-image 0.26 gave, and against scikit-image itself when it is installed.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from synthetic import write_ferplus_csv, write_ferplus_folders

from feredge.benchmarks.accuracy import load_accuracy_data, model_accuracy
from feredge.benchmarks.facex_pipeline import FACEX_CATEGORIES, facex_crop, facex_detector, facex_input
from feredge.benchmarks.frames import draw_face
from feredge.benchmarks.peers import FACEX, facex_dir, peer_subjects
from feredge.cli import main
from feredge.edge.labels import FER2013, resolve_labels
from feredge.edge.metrics import vote_cross_entropy
from feredge.edge.model import load_model

FACEX_INSTALLED = importlib.util.find_spec("facex") is not None
# out[::100, ::100, 0] and the sum of channel 0 of skimage 0.26's resize(img, (200, 200, 3)) for
# default_rng(25).integers(0, 256, shape, uint8), drawn in this order: both axes grow, and both shrink (anti-aliased).
SKIMAGE_026 = {
    (3, 5): ([0.2040716857, 0.1311466843, 0.0883588269, 0.1673534364], 14588.5118617),
    (48, 48): ([0.4341035187, 0.3465898037, 0.3697772622, 0.2370541245], 19891.8196186),
    (613, 488): ([0.6246224046, 0.4665634036, 0.6056678295, 0.3910140991], 19987.9276222),
}


def skimage_crops() -> dict[tuple[int, int], np.ndarray]:
    rng = np.random.default_rng(25)
    return {shape: rng.integers(0, 256, shape, dtype=np.uint8) for shape in SKIMAGE_026}


@pytest.mark.edge
def test_facex_input_gives_the_values_skimage_resize_gave():
    for shape, crop in skimage_crops().items():
        out = facex_input(crop)
        assert out.shape == (200, 200, 3) and out.dtype == np.float32
        assert np.array_equal(out[..., 0], out[..., 2])  # the gray value in all three channels
        pixels, total = SKIMAGE_026[shape]
        np.testing.assert_allclose(out[::100, ::100, 0].ravel(), pixels, atol=1e-6, err_msg=str(shape))
        assert float(out[..., 0].astype(np.float64).sum()) == pytest.approx(total, abs=1e-3)


@pytest.mark.edge
def test_facex_input_is_in_0_1_with_mirrored_edges_unlike_opencv():
    row = np.array([[0, 255]], np.uint8)
    out = facex_input(row)[..., 0]
    # Pixel 0 samples coordinate -0.495: mirrored, that is 0.495 of the way to the 255 pixel (OpenCV clamps: 0).
    assert out[0, 0] == pytest.approx(0.495, abs=1e-6) and out[0, -1] == pytest.approx(0.505, abs=1e-6)
    assert float(facex_input(np.full((7, 300), 255, np.uint8)).min()) == 1.0  # no second /255: already in [0, 1]
    with pytest.raises(ValueError, match="2-D uint8"):
        facex_input(np.zeros((4, 4, 3), np.uint8))


@pytest.mark.skipif(importlib.util.find_spec("skimage") is None, reason="scikit-image is not installed")
def test_facex_input_equals_skimage_resize_bit_for_bit():
    from skimage.transform import resize

    rng = np.random.default_rng(0)
    for shape in [(1, 1), (2, 3), (37, 91), (201, 200), (613, 488), (1000, 57), (211, 1)]:
        crop = rng.integers(0, 256, shape, dtype=np.uint8)
        assert np.array_equal(facex_input(crop), np.asarray(resize(crop, (200, 200, 3)), np.float32)), shape


def test_facex_categories_map_to_feredges_labels():
    assert resolve_labels(FACEX_CATEGORIES) == ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")


@pytest.fixture
def fake_facex(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A facex package layout whose import fails, as the real one's does without TensorFlow."""
    package = tmp_path / "site" / "facex"
    (package / "assets").mkdir(parents=True)
    (package / "__init__.py").write_text("raise ImportError('facex must not be imported')\n")
    cascade = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"
    shutil.copyfile(cascade, package / "assets" / "haarcascade_frontalface_default.xml")
    monkeypatch.delitem(sys.modules, "facex", raising=False)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    return package


def test_facex_files_are_found_without_importing_facex(fake_facex):
    assert facex_dir() == fake_facex / "assets"
    (subject,) = peer_subjects(["facex"])
    model_file = str(fake_facex / "assets" / "model_optimized.tflite")
    assert (subject.kind, subject.path, subject.skip_reason) == (FACEX, model_file, None)
    photo = np.full((320, 320, 3), 90, np.uint8)
    photo[60:260, 60:260] = draw_face(200)
    (box,) = facex_detector().detect(photo)  # its cascade, scale 1.1, 4 neighbours
    x, y, w, h = box
    assert np.array_equal(facex_crop(photo, box), cv2.cvtColor(photo, cv2.COLOR_BGR2GRAY)[y : y + h, x : x + w])
    assert "facex" not in sys.modules


@pytest.fixture
def without_facex(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "facex", None)  # what find_spec and import see when facex is missing


def test_a_peer_not_installed_is_skipped_with_its_install_line(without_facex, tiny_int8_model, tmp_path, capsys):
    (subject,) = peer_subjects(["facex", "facex"])
    assert subject.skip_reason.startswith("--peer facex needs the facex package, which is not installed: pip install")
    out = tmp_path / "out"
    argv = ["bench", "--models", str(tiny_int8_model), "--peer", "facex", "--data", "none", "--threads", "1"]
    argv += ["--runs", "2", "--warmup", "0", "--frames", "1", "--out", str(out)]
    assert main(argv) == 1  # the model was measured, the peer asked for was not
    models = {m["name"]: m for m in json.loads((out / "results.json").read_text())["models"]}
    assert models["int8"]["status"] == "ok" and models["facex"]["status"] == "skipped"
    captured = capsys.readouterr()
    assert "- facex: skipped: --peer facex needs the facex package" in captured.out
    assert "1 of 2 model(s) failed (1 skipped)" in captured.err and "Traceback" not in captured.err


def test_evaluate_photos_skips_a_peer_not_installed_in_one_line(without_facex, tiny_int8_model, tmp_path, caplog):
    photos = tmp_path / "photos"
    photo = np.full((320, 320, 3), 90, np.uint8)
    photo[60:260, 60:260] = draw_face(200)
    for label, count in (("angry", 1), ("neutral", 2)):  # the tiny model answers angry for the drawn face
        (photos / label).mkdir(parents=True)
        for i in range(count):
            cv2.imwrite(str(photos / label / f"{i}.png"), photo)
    out = tmp_path / "out"
    argv = ["evaluate-photos", str(photos), "--models", str(tiny_int8_model), "--detectors", "haar"]
    argv += ["--margins", "0", "--frames", "1", "--peer", "facex", "--out", str(out)]
    assert main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    assert list(results["peers_skipped"]) == ["facex"] and {row["model"] for row in results["rows"]} == {"int8"}
    row = results["rows"][0]
    assert row["accuracy"] == pytest.approx(1 / 3) and row["balanced_accuracy"] == pytest.approx(0.5)
    markdown = (out / "results.md").read_text()
    assert "peer facex skipped: --peer facex needs the facex package" in markdown
    assert "| neutral (truth) |" in markdown and "| 0 (2) |" in markdown
    (line,) = [r.message for r in caplog.records if "facex" in r.message]
    assert "\n" not in line


@pytest.mark.skipif(not FACEX_INSTALLED, reason="facex is not installed (pip install --no-deps facex)")
def test_facex_runs_its_own_pipeline_on_a_drawn_face(tmp_path):
    from feredge.benchmarks.facex_pipeline import facex_pipeline
    from feredge.benchmarks.photo_bench import photo_pipeline, score_photos
    from feredge.benchmarks.photos import NO_FACE, load_photos
    from feredge.edge.detectors import make_detector

    photos = tmp_path / "photos"
    photo = np.full((320, 320, 3), 90, np.uint8)
    photo[60:260, 60:260] = draw_face(200)
    for label, image in {"happy": photo, "neutral": np.full_like(photo, 90)}.items():
        (photos / label).mkdir(parents=True)
        cv2.imwrite(str(photos / label / "0.png"), image)
    (subject,) = peer_subjects(["facex"])
    detector, model = facex_pipeline(threads=1)
    assert model.labels == resolve_labels(FACEX_CATEGORIES) and model.metadata.format == "tflite-dynamic"
    (box,) = detector.detect(photo)
    crop = facex_crop(photo, box)
    assert np.array_equal(model.preprocess([crop])[0], facex_input(crop))
    probs = model.predict_crops([crop])
    assert probs.shape == (1, 7) and np.isclose(probs.sum(), 1.0, atol=1e-4)
    name, pipeline = photo_pipeline(subject, model, make_detector("yunet"))
    assert name == "facex: its Haar cascade and crop"
    scores = score_photos(pipeline, load_photos(photos), model.labels)
    assert (scores["found"], scores["predicted"][NO_FACE], scores["truth"]["neutral"]) == (1, 1, 1)


def test_ferplus_folders_score_majority_votes_and_cross_entropy_in_the_models_label_order(tiny_int8_model, tmp_path):
    data = load_accuracy_data(write_ferplus_folders(tmp_path / "ferplus"))
    summary = data.summary()
    assert summary["votes"] and summary["layout"].startswith("ferplus-folders") and summary["samples"] == 14
    assert sum(summary["left_out_all_splits"].values()) == 4  # per split, one face 'unknown' won and one tie
    # The model's columns in another order than the data's classes: targets and votes must follow its labels.
    order = tuple(reversed(FER2013))
    model = load_model(tiny_int8_model, labels=order, threads=1)
    metrics = model_accuracy(model, data)
    classes, split = data.prepared(48)
    faces = split.images.astype(np.float32)[..., None] / 255.0
    scores = model.predict(faces)
    votes = split.votes[:, [classes.index(label) for label in order]]
    assert metrics["vote_cross_entropy"] == pytest.approx(vote_cross_entropy(votes, scores), rel=1e-5)
    truth = [order.index(classes[t]) for t in split.targets]
    assert metrics["accuracy"] == pytest.approx(np.mean(scores.argmax(1) == truth))
    assert "balanced_accuracy" in metrics and "fer2013_labels" not in metrics


def test_a_fer2013_csv_with_ferplus_votes_is_also_scored_on_its_own_labels(tiny_int8_model, tmp_path, capsys):
    fer_csv, votes_csv = write_ferplus_csv(tmp_path / "fer2013.csv", tmp_path / "fer2013new.csv")
    out = tmp_path / "out"
    argv = ["bench", "--models", str(tiny_int8_model), "--data", str(fer_csv), "--ferplus", str(votes_csv)]
    argv += ["--threads", "1", "--runs", "2", "--warmup", "0", "--frames", "1", "--out", str(out)]
    assert main(argv) == 0
    (model,) = json.loads((out / "results.json").read_text())["models"]
    accuracy = model["accuracy"]
    # PublicTest: 14 faces with a FER+ majority, and all 17 rows with their FER2013 labels
    assert accuracy["samples"] == 14 and accuracy["fer2013_labels"]["samples"] == 17
    assert accuracy["vote_cross_entropy"] > 0
    neutral = accuracy["per_class"]["neutral"]
    text = capsys.readouterr().out
    assert "CE votes" in text and "FER2013 acc" in text and f"{neutral['answers']} ({neutral['support']})" in text
    assert main(["bench", "--models", str(tiny_int8_model), "--ferplus", str(votes_csv), "--out", str(out)]) == 2
    assert "--ferplus FER2013NEW_CSV goes with --data fer2013.csv" in capsys.readouterr().err
