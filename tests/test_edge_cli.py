"""``feredge predict`` and ``feredge video``: output formats, bad inputs, exit codes, no TensorFlow."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from feredge.cli import main
from feredge.cli.options import MAX_THREADS
from feredge.edge.detectors import DEFAULT_DETECTOR

pytestmark = pytest.mark.edge  # needs only `pip install .`: .ci/run also runs it in an edge-only venv


def write_image(path: Path, image: np.ndarray) -> Path:
    ok, data = cv2.imencode(path.suffix, image)
    assert ok
    path.write_bytes(data.tobytes())
    return path


@pytest.fixture(scope="module")
def photos(face_scene, tmp_path_factory) -> Path:
    """A folder of good images of every layout, and bad files, some in a subfolder."""
    scene, _ = face_scene
    root = tmp_path_factory.mktemp("photos")
    (root / "sub").mkdir()
    write_image(root / "scene.jpg", scene)
    write_image(root / "gray.png", cv2.cvtColor(scene, cv2.COLOR_BGR2GRAY))
    write_image(root / "rgba.png", cv2.cvtColor(scene, cv2.COLOR_BGR2BGRA))
    write_image(root / "sub" / "deep16.png", scene.astype(np.uint16) * 257)
    write_image(root / "sub" / "blank.png", np.full((120, 160, 3), 200, np.uint8))
    (root / "empty.jpg").write_bytes(b"")
    (root / "notes.jpg").write_text("this is a text file, renamed\n")
    (root / "cut.jpg").write_bytes((root / "scene.jpg").read_bytes()[:-500])
    (root / "readme.txt").write_text("not an image suffix: skipped")
    return root


BAD = {"empty.jpg": "empty", "notes.jpg": "not a readable image", "cut.jpg": "truncated"}
GOOD_FACES = {"scene.jpg": 2, "gray.png": 2, "rgba.png": 2, "sub/deep16.png": 2, "sub/blank.png": 0}


def test_table_output(tiny_int8_model, photos, capsys):
    assert main(["predict", str(photos / "scene.jpg"), "--model", str(tiny_int8_model)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:5] == ["file", "face", "label", "conf", "box"]
    assert len(out) == 3 and all(line.startswith(str(photos / "scene.jpg")) for line in out[1:])
    assert out[1].split()[2] in {"angry", "disgust"}
    assert len({line.index("(") for line in out[1:]}) == 1 and out[0].index("box") == out[1].index("(")


def test_folder_with_good_and_bad_files(tiny_int8_model, photos, capsys):
    code = main(["predict", str(photos), "--model", str(tiny_int8_model), "--json", "--threads", "1"])
    captured = capsys.readouterr()
    assert code == 1
    records = {str(Path(r["file"]).relative_to(photos)): r for r in map(json.loads, captured.out.splitlines())}
    assert set(records) == set(GOOD_FACES) | set(BAD)
    for name, count in GOOD_FACES.items():
        assert len(records[name]["faces"]) == count, name
        assert records[name]["timings"]["infer_ms"] >= 0
    errors = [line for line in captured.err.splitlines() if line.startswith("error:")]
    assert len(errors) == len(BAD)
    for name, problem in BAD.items():
        assert problem in records[name]["error"]
        assert sum(str(photos / name) in line and problem in line for line in errors) == 1
    assert "summary: 5 images · 8 faces · 3 failed" in captured.err


def test_missing_file_does_not_stop_the_run(tiny_int8_model, photos, tmp_path, capsys):
    missing = tmp_path / "gone.jpg"
    empty_dir = tmp_path / "nothing"
    empty_dir.mkdir()
    code = main(["predict", str(missing), str(empty_dir), str(photos / "scene.jpg"), "--model", str(tiny_int8_model)])
    captured = capsys.readouterr()
    assert code == 1
    assert f"error: {missing}: file not found" in captured.err
    assert f"error: {empty_dir}: no image files" in captured.err
    assert len(captured.out.splitlines()) == 3
    main(["predict", str(empty_dir), str(photos / "scene.jpg"), "--model", str(tiny_int8_model), "--json"])
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert records[0] == {"file": str(empty_dir), "error": f"{empty_dir}: no image files in this folder"}
    assert records[1]["file"] == str(photos / "scene.jpg") and "faces" in records[1]


def test_annotate_writes_images_with_boxes(tiny_int8_model, photos, tmp_path, capsys):
    out = tmp_path / "annotated"
    main(["predict", str(photos), "--model", str(tiny_int8_model), "--annotate", str(out)])
    capsys.readouterr()
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert written == sorted(GOOD_FACES)
    original = cv2.imread(str(photos / "gray.png"), cv2.IMREAD_UNCHANGED)
    drawn = cv2.imread(str(out / "gray.png"), cv2.IMREAD_UNCHANGED)
    assert drawn.shape == (*original.shape, 3)
    assert not np.array_equal(cv2.cvtColor(drawn, cv2.COLOR_BGR2GRAY), original)


def test_annotate_into_a_scanned_input_folder_is_refused_before_any_work(tiny_int8_model, face_scene, tmp_path, capsys):
    mixed, crops = tmp_path / "mixed", tmp_path / "crops"
    (mixed / "sub").mkdir(parents=True)
    crops.mkdir()
    write_image(mixed / "a.png", face_scene[0])
    write_image(mixed / "sub" / "b.jpg", face_scene[0])
    write_image(crops / "c.pgm", cv2.cvtColor(face_scene[0], cv2.COLOR_BGR2GRAY))  # its copy: c.pgm.png, no overwrite
    (tmp_path / "link").symlink_to(mixed)
    before = sorted(tmp_path.rglob("*"))
    cases = [(mixed, mixed / "sub", "is inside"), (mixed, mixed / "new" / "deeper", "is inside")]
    cases += [(mixed, tmp_path / "link" / "out", "is inside"), (crops, crops, "is")]
    for folder, out, where in cases:
        code = main(["predict", str(folder), "--model", str(tiny_int8_model), "--annotate", str(out)])
        captured = capsys.readouterr()
        assert code == 2 and captured.out == ""
        assert captured.err == (
            f"feredge predict: error: --annotate: {out} {where} the input folder {folder}, where the next scan "
            "would take the annotated copies for inputs; choose a folder outside it\n"
        )
    assert sorted(tmp_path.rglob("*")) == before  # no copy, not even an empty output folder
    beside = tmp_path / "annotated"
    assert main(["predict", str(mixed / "a.png"), "--model", str(tiny_int8_model), "--annotate", str(beside)]) == 0
    assert (beside / "a.png").is_file()


def test_detector_none_on_face_crops(tiny_int8_model, tmp_path, capsys):
    crop = np.zeros((48, 48), np.uint8)
    crop[:, :24] = 255
    path = write_image(tmp_path / "crop.png", crop)
    assert main(["predict", str(path), "--model", str(tiny_int8_model), "--detector", "none", "--json"]) == 0
    (record,) = map(json.loads, capsys.readouterr().out.splitlines())
    assert record["faces"][0]["box"] == [0, 0, 48, 48] and record["faces"][0]["label"] == "angry"


@pytest.mark.parametrize(
    ("model", "extra", "message"),
    [
        ("truncated", [], "truncated.tflite: not a valid TFLite model"),
        ("no_labels", [], "no_labels.tflite: metadata has no labels"),
        ("float32_plain", [], "no feredge metadata"),
        ("float32_plain", ["--labels", "fer5"], "5 labels"),
    ],
)
def test_model_problems_exit_2_with_one_message(tiny_models, photos, tmp_path, capsys, model, extra, message):
    if model == "truncated":
        path = tmp_path / "truncated.tflite"
        path.write_bytes(tiny_models["int8"].read_bytes()[:3000])
    else:
        path = tiny_models[model]
    assert main(["predict", str(photos / "scene.jpg"), "--model", str(path), *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("feredge predict: error:") and message in err[0]


def test_model_without_labels_works_with_labels_option(tiny_models, photos, capsys):
    args = ["predict", str(photos / "scene.jpg"), "--model", str(tiny_models["no_labels"]), "--labels", "fer2013"]
    assert main(args) == 0
    assert len(capsys.readouterr().out.splitlines()) == 3


def test_no_default_model_installed(photos, capsys, tmp_path, monkeypatch):
    monkeypatch.setattr("feredge.edge.model.DEFAULT_MODEL", tmp_path / "feredge_default_int8.tflite")
    assert main(["predict", str(photos / "scene.jpg")]) == 2
    assert "no default model is installed" in capsys.readouterr().err


def test_predict_uses_the_shipped_model_by_default(photos, capsys):
    assert main(["predict", str(photos / "scene.jpg"), "--json"]) == 0
    record = json.loads(capsys.readouterr().out.splitlines()[0])
    assert len(record["faces"]) == 2
    assert all(face["label"] in face["scores"] and len(face["scores"]) == 7 for face in record["faces"])
    # the demo's REST record (tests/test_demo.py), with the file in place of the thread count
    assert set(record) == {"file", "model", "detector", "image_size", "faces", "timings"}
    assert record["model"] == "feredge_default_int8.tflite" and record["detector"] == DEFAULT_DETECTOR
    height, width = cv2.imread(str(photos / "scene.jpg")).shape[:2]
    assert record["image_size"] == [width, height]
    assert all(value == round(value, 3) for value in record["timings"].values())


def test_video_json_and_out(tiny_int8_model, face_scene, tmp_path, capsys):
    scene, _ = face_scene
    clip = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 10, (640, 480))
    for i in range(6):
        writer.write(np.roll(scene, 3 * i, axis=0))
    writer.release()
    out = tmp_path / "out.mp4"
    args = ["--model", str(tiny_int8_model), "--json", "--out", str(out), "--detect-every", "2"]
    code = main(["video", str(clip), *args])
    captured = capsys.readouterr()
    assert code == 0
    records = [json.loads(line) for line in captured.out.splitlines()]
    assert [r["frame"] for r in records] == list(range(6))
    assert [r["detected"] for r in records] == [True, False] * 3
    assert all(len(r["faces"]) == 2 for r in records)
    assert "done: 6 frames" in captured.err and str(out) in captured.err
    assert cv2.VideoCapture(str(out)).read()[0]


def test_video_that_cannot_be_opened(tiny_int8_model, tmp_path, capsys):
    bogus = tmp_path / "movie.mp4"
    bogus.write_text("no video here\n" * 100)
    assert main(["video", str(bogus), "--model", str(tiny_int8_model)]) == 2
    assert f"feredge video: error: {bogus}: cannot open video file" in capsys.readouterr().err


def _python(code: str, *args: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-c", code, *args], env=env, text=True, **kwargs)


def test_edge_and_predict_never_import_tensorflow(tiny_int8_model, photos):
    code = (
        "import sys\n"
        "import feredge.edge, feredge.edge.model, feredge.edge.recognizer, feredge.edge.video, feredge.edge.draw\n"
        "assert 'tensorflow' not in sys.modules, 'import'\n"
        "from feredge.cli import main\n"
        "rc = main(['predict', sys.argv[1], '--model', sys.argv[2], '--json'])\n"
        "assert rc == 0, rc\n"
        "assert 'tensorflow' not in sys.modules, 'predict'\n"
        "print('clean')\n"
    )
    proc = _python(code, str(photos / "scene.jpg"), str(tiny_int8_model), stdout=subprocess.PIPE)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0 and out.splitlines()[-1] == "clean"


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_on_video_stops_cleanly_with_a_playable_file(tiny_int8_model, face_drawer, tmp_path, signum):
    """A real SIGINT or SIGTERM to a real process, on a clip long enough that it is still running: the
    partial output is finished and moved into place, no temporary file stays, and the exit code is 130."""
    frame = np.full((120, 160, 3), 90, np.uint8)
    frame[10:110, 30:130] = face_drawer(100)
    clip = tmp_path / "long.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 25, (160, 120))
    for _ in range(3000):
        writer.write(frame)
    writer.release()
    out = tmp_path / "stopped.mp4"
    # A shell that starts a job in the background (`cmd &`) makes it ignore SIGINT, and Python keeps that:
    # restore Ctrl-C's handler so the test does not depend on how the suite was started.
    code = (
        "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "from feredge.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    args = ["video", str(clip), "--model", str(tiny_int8_model), "--json", "--out", str(out), "--threads", "1"]
    proc = _python(code, *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        for _ in range(5):
            assert proc.stdout.readline(), "video ended before it could be interrupted"
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted:" in err and f"kept the frames processed before the interruption in {out}" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["long.avi", "stopped.mp4"]
    capture = cv2.VideoCapture(str(out))
    assert capture.read()[0]
    # a frame's JSON line comes before it is written: the first 4 of the 5 seen are in the file
    assert 4 <= capture.get(cv2.CAP_PROP_FRAME_COUNT) < 3000
    capture.release()


# --- option values are checked by argparse, before anything is loaded ---

THREADS_EXPECTED = f"expected a whole number from 1 to {MAX_THREADS} (4 per core, at most 256)"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["predict", "x.jpg", "--threads", "0"], f"argument --threads: {THREADS_EXPECTED}, got '0'"),
        (["predict", "x.jpg", "--threads", "-2"], f"argument --threads: {THREADS_EXPECTED}, got '-2'"),
        (["predict", "x.jpg", "--threads", "two"], f"argument --threads: {THREADS_EXPECTED}, got 'two'"),
        (["predict", "x.jpg", "--min-face", "-1"], "argument --min-face: expected a whole number >= 0, got '-1'"),
        (["predict", "x.jpg", "--detector", "mtcnn"], "argument --detector: invalid choice: 'mtcnn'"),
        (["video", "0", "--detect-every", "0"], "argument --detect-every: expected a whole number >= 1"),
        (["video", "0", "--smoothing", "0"], "argument --smoothing: expected a number in (0, 1], got '0'"),
        (["video", "0", "--smoothing", "1.5"], "argument --smoothing: expected a number in (0, 1], got '1.5'"),
        (["video", "0", "--smoothing", "nan"], "argument --smoothing: expected a number in (0, 1], got 'nan'"),
        (["video", "0", "--max-frames", "0"], "argument --max-frames: expected a whole number >= 1"),
    ],
)
def test_bad_option_values_are_usage_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_detector_choices_come_from_the_one_table():
    from feredge.cli import build_parser
    from feredge.cli.bench import parse_args as bench_args
    from feredge.edge.detectors import DETECTORS

    parser = build_parser()
    for name in DETECTORS:
        assert parser.parse_args(["predict", "x.jpg", "--detector", name]).detector == name
        assert parser.parse_args(["video", "0", "--detector", name]).detector == name
    assert bench_args(["--detector", "yunet"]).detector == "yunet"
    with pytest.raises(SystemExit):
        bench_args(["--detector", "none"])  # the pipeline benchmark needs a detector that finds faces


def _help(parse, argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit):
        parse(argv)
    return " ".join(capsys.readouterr().out.split())  # argparse's line wrapping undone


def test_help_describes_exactly_the_choices_each_option_takes(capsys):
    from feredge.cli.bench import parse_args as bench_args
    from feredge.edge.video import WRITER_CODECS

    assert "none: no detection" in _help(main, ["predict", "--help"], capsys)
    bench = _help(bench_args, ["--help"], capsys)
    assert "yunet: YuNet" in bench and "none:" not in bench  # bench refuses --detector none
    video = _help(main, ["video", "--help"], capsys)
    assert f"write the annotated video ({', '.join(WRITER_CODECS)})" in video
    assert "another model file for the detector (yunet, blazeface;" in video


def test_a_detector_model_for_a_detector_without_one_is_refused(tiny_int8_model, photos, tmp_path, capsys):
    onnx = tmp_path / "other.onnx"
    onnx.write_bytes(b"unused")
    argv = ["predict", str(photos / "scene.jpg"), "--model", str(tiny_int8_model), "--detector-model", str(onnx)]
    assert main([*argv, "--detector", "haar"]) == 2
    assert capsys.readouterr().err == (
        f"feredge predict: error: detector 'haar' takes no detector model file ({onnx}); "
        "one can be given only for: yunet, blazeface\n"
    )


def test_annotate_gray_pgm_and_same_file_names_from_different_folders(tiny_int8_model, face_scene, tmp_path, capsys):
    scene, _ = face_scene
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
    gray = write_image(tmp_path / "a" / "gray.pgm", cv2.cvtColor(scene, cv2.COLOR_BGR2GRAY))
    first = write_image(tmp_path / "a" / "photo.jpg", scene)
    second = write_image(tmp_path / "b" / "photo.jpg", np.full((120, 160, 3), 200, np.uint8))
    out = tmp_path / "annotated"
    args = [
        "predict",
        str(gray),
        str(first),
        str(second),
        "--model",
        str(tiny_int8_model),
        "--json",
        "--annotate",
        str(out),
    ]
    assert main(args) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [Path(r["annotated"]).name for r in records] == ["gray.pgm.png", "photo.jpg", "photo-2.jpg"]
    drawn = cv2.imread(str(out / "gray.pgm.png"))
    assert drawn.shape == (480, 640, 3) and not np.array_equal(drawn[..., 0], drawn[..., 2])  # coloured boxes
    assert cv2.imread(str(out / "photo.jpg")).shape == (480, 640, 3)
    assert cv2.imread(str(out / "photo-2.jpg")).shape == (120, 160, 3)  # the second photo, not over the first


def _unwritable(tmp_path: Path) -> list[Path]:
    """Folders no file can be written in: below a regular file, and in /proc where it exists."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    return [blocker / "out"] + ([Path("/proc/feredge-test/out")] if Path("/proc/self").is_dir() else [])


def test_unwritable_annotate_and_video_out_fail_before_any_work(tiny_int8_model, photos, tmp_path, capsys):
    for folder in _unwritable(tmp_path):
        code = main(["predict", str(photos / "scene.jpg"), "--model", str(tiny_int8_model), "--annotate", str(folder)])
        captured = capsys.readouterr()
        assert code == 2 and captured.out == ""
        assert f"feredge predict: error: cannot write annotated images to {folder}:" in captured.err
        if folder.parent.is_file():
            assert f"{folder.parent} is a file, not a folder" in captured.err
        code = main(["video", "missing.avi", "--model", "missing.tflite", "--out", str(folder / "y.mp4")])
        assert code == 2
        assert f"feredge video: error: cannot write the video to {folder}:" in capsys.readouterr().err


def test_prior_tau_is_checked_before_any_image_is_read(tiny_int8_model, photos, capsys):
    image = str(photos / "scene.jpg")
    with pytest.raises(SystemExit) as usage:
        main(["predict", image, "--model", str(tiny_int8_model), "--prior-tau", "7"])
    assert usage.value.code == 2 and "expected a number from 0 to 3" in capsys.readouterr().err
    assert main(["predict", image, "--model", str(tiny_int8_model), "--prior-tau", "1"]) == 2
    captured = capsys.readouterr()
    assert "no training class prior" in captured.err and captured.out == ""
    assert main(["predict", image, "--model", str(tiny_int8_model), "--prior-tau", "0", "--json"]) == 0
