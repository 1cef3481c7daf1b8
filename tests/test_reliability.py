"""Issue #12: never touch a user's file, bounded reads, clear messages, one exit-code rule.

Each test is the regression test of one numbered item of the issue (named in its docstring).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from feredge.cli import main
from feredge.edge.dataset import NON_IMAGE, load_dataset
from feredge.edge.errors import DataError, OptionError
from feredge.edge.metadata import resolve_metadata


def _face_png(path: Path, face_drawer, size: int = 120) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), face_drawer(size))
    return path


def _cli(code: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=timeout)


# --- 1, 2: never write over what the user made ---


def test_annotate_into_the_input_folder_is_refused_and_the_input_kept(tiny_int8_model, face_drawer, tmp_path, capsys):
    """#12.1: ``predict s/ --annotate s/`` would replace s/a.jpg with its annotated copy."""
    image = _face_png(tmp_path / "s" / "a.png", face_drawer)
    before = image.read_bytes()
    code = main(["predict", str(image.parent), "--model", str(tiny_int8_model), "--annotate", str(image.parent)])
    assert code == 2
    assert "would overwrite" in capsys.readouterr().err
    assert image.read_bytes() == before


def test_video_out_that_is_the_input_is_refused(tiny_int8_model, face_drawer, tmp_path, capsys):
    """#12.2: ``feredge video v.avi --out v.avi`` would replace the source video."""
    clip = tmp_path / "v.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 5, (160, 120))
    for _ in range(3):
        writer.write(np.full((120, 160, 3), 90, np.uint8))
    writer.release()
    before = clip.read_bytes()
    assert main(["video", str(clip), "--model", str(tiny_int8_model), "--out", str(clip)]) == 2
    assert "is the input video" in capsys.readouterr().err
    assert clip.read_bytes() == before


# --- 3: a rejected conversion keeps an earlier passing artefact ---


def _stub_converter(out: Path, monkeypatch: pytest.MonkeyPatch, max_f1_drop: float):
    """A ``Converter`` whose gate runs for real on made-up scores: no TensorFlow, no model build."""
    from feredge.convert import converter
    from feredge.convert.formats import FORMATS
    from feredge.edge.dataset import Split
    from feredge.edge.metadata import ModelMetadata

    targets = np.array([0, 1, 0, 1])
    perfect = np.eye(2, dtype=np.float32)[targets]
    model = SimpleNamespace(predict=lambda batch, prior_tau=None: perfect)  # never called: score_batches is stubbed
    monkeypatch.setattr("feredge.edge.model.load_model", lambda path, threads=None: model)
    monkeypatch.setattr(converter, "score_batches", lambda *a, **k: perfect)
    conv = converter.Converter.__new__(converter.Converter)
    conv.source = SimpleNamespace(stem="model", path=out / "model.keras", float_bytes=4096)
    conv.data = SimpleNamespace(check=Split(np.zeros((4, 48, 48), np.uint8), targets), check_source="stub")
    conv.options = converter.ConvertOptions(out=out, max_f1_drop=max_f1_drop, calibrate=False)
    conv.out, conv.float_scores = out, perfect
    conv.spec = None
    metadata = ModelMetadata(labels=("happy", "sad"), format="tflite-fp32")
    return conv, FORMATS["fp32"], metadata


def test_rejected_conversion_keeps_an_earlier_passing_model_and_says_so(tmp_path, monkeypatch):
    """#12.3: a rejection used to delete model_fp32.tflite left by an earlier, passing run."""
    conv, fmt, metadata = _stub_converter(tmp_path, monkeypatch, max_f1_drop=-1.0)
    earlier = tmp_path / "model_fp32.tflite"
    earlier.write_bytes(b"passed last week")
    outcome = conv._gate_and_write(fmt, "", b"new bytes", metadata, 0.1)
    assert outcome.status == "rejected"
    assert earlier.read_bytes() == b"passed last week"
    assert (tmp_path / "model_fp32.REJECTED.tflite").read_bytes() == b"new bytes"
    assert "model_fp32.tflite is from an earlier conversion that passed the gate, not from this run" in outcome.reason
    report = json.loads((tmp_path / "model_fp32.report.json").read_text())
    assert report["status"] == "rejected" and report["earlier_artefact"] == str(earlier)


def test_passing_conversion_replaces_the_model_and_removes_an_old_rejected_build(tmp_path, monkeypatch):
    """#12.3, the other way: a pass supersedes both the earlier model and an earlier rejected build."""
    conv, fmt, metadata = _stub_converter(tmp_path, monkeypatch, max_f1_drop=0.01)
    (tmp_path / "model_fp32.REJECTED.tflite").write_bytes(b"old rejected build")
    outcome = conv._gate_and_write(fmt, "", b"new bytes", metadata, 0.1)
    assert outcome.status == "ok" and outcome.reason == ""
    assert (tmp_path / "model_fp32.tflite").read_bytes() == b"new bytes"
    assert not (tmp_path / "model_fp32.REJECTED.tflite").exists()
    assert json.loads((tmp_path / "model_fp32.report.json").read_text())["earlier_artefact"] is None


# --- 5, 6: bounded reads of regular files only ---


def test_a_2_gib_file_fails_alone_and_the_folder_goes_on(tiny_int8_model, face_drawer, tmp_path, capsys):
    """#12.5: a sparse 2 GiB ``aaa.jpg`` gave a cv2.error traceback and abandoned the folder."""
    with open(tmp_path / "aaa.jpg", "wb") as fh:
        fh.truncate(2 * 2**30)
    _face_png(tmp_path / "bbb.png", face_drawer)
    assert main(["predict", str(tmp_path), "--model", str(tiny_int8_model), "--json"]) == 1
    captured = capsys.readouterr()
    assert "aaa.jpg: 2.0 GiB is above the 256 MiB limit for an image" in captured.err
    assert "Traceback" not in captured.err
    records = [json.loads(line) for line in captured.out.splitlines()]
    assert [Path(r["file"]).name for r in records] == ["aaa.jpg", "bbb.png"] and "faces" in records[1]


@pytest.mark.skipif(not os.path.exists("/dev/zero") or not hasattr(os, "mkfifo"), reason="needs /dev/zero and FIFOs")
def test_devices_and_fifos_are_refused_without_reading(tiny_int8_model, tmp_path):
    """#12.6: /dev/zero was read until the kernel killed the process; a FIFO named x.jpg hung."""
    fifo = tmp_path / "x.jpg"
    os.mkfifo(fifo)
    code = "import sys; from feredge.cli import main; sys.exit(main(sys.argv[1:]))"
    done = _cli(code, "predict", "/dev/zero", str(fifo), "--model", str(tiny_int8_model))
    assert done.returncode == 2, done.stderr
    assert "/dev/zero: not a regular file (a character device)" in done.stderr
    assert "x.jpg: not a regular file (a FIFO)" in done.stderr


# --- 7, 8: refusals and messages that say what is wrong ---


def _class_folders(root: Path, classes: dict[str, int], face_drawer) -> Path:
    for label, count in classes.items():
        for i in range(count):
            _face_png(root / label / f"{i}.png", face_drawer, 48)
    return root


def test_one_class_is_refused_for_training(face_drawer, tmp_path):
    """#12.7: one class trained a 1-output model and exited 0."""
    data = _class_folders(tmp_path / "data", {"happy": 4}, face_drawer)
    with pytest.raises(DataError, match=r"only one class \(happy\); training needs at least two classes"):
        load_dataset(data)
    assert len(load_dataset(data, make_val=False).labels) == 1  # evaluation of one class is fine


@pytest.mark.slow
def test_feredge_train_on_one_class_exits_2_with_one_line(face_drawer, tmp_path):
    """#12.7 through the command: no model is trained, no traceback."""
    data = _class_folders(tmp_path / "data", {"happy": 4}, face_drawer)
    code = "import sys; from feredge.cli import main; sys.exit(main(sys.argv[1:]))"
    done = _cli(code, "train", str(data), "--out", str(tmp_path / "run"), "--epochs", "1", timeout=300)
    assert done.returncode == 2, done.stderr
    assert "training needs at least two classes" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "run" / "model.keras").exists()


def test_a_class_whose_files_are_all_corrupt_says_so(face_drawer, tmp_path):
    """#12.8: "no training images" became "N files, all unreadable"."""
    data = _class_folders(tmp_path / "data", {"happy": 3, "sad": 0}, face_drawer)
    (data / "sad").mkdir()
    for i in range(2):
        (data / "sad" / f"{i}.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(DataError, match=r"sad: 2 image file\(s\), all unreadable \(first: .*0\.jpg"):
        load_dataset(data)


def test_a_bad_csv_row_is_reported_with_its_line_number(tmp_path, caplog):
    """#12.8: a malformed row was skipped without saying where it is."""
    face = " ".join(["128"] * 16)
    rows = ["emotion,pixels,Usage", f"3,{face},Training", "3,1 2 3,Training", f"4,{face},Training"]
    rows.append(f"9,{face},Training")
    path = tmp_path / "faces.csv"
    path.write_text("\n".join(rows) + "\n")
    with caplog.at_level(logging.WARNING, logger="feredge.edge.dataset"):
        data = load_dataset(path, "happy,sad", make_val=False)
    assert len(data.splits["train"]) == 2 and sum(data.skipped.values()) == 2
    assert "line 3: 3 pixels do not make a square image" in caplog.text
    assert "line 5: emotion 9 is not a FER2013 class index" in caplog.text


@pytest.mark.skipif(sys.platform == "win32", reason="symbolic links")
def test_a_symlink_loop_is_named_as_such(tiny_int8_model, tmp_path, capsys):
    """#12.8: a symlink loop said "file not found"."""
    loop = tmp_path / "loop.jpg"
    loop.symlink_to(loop)
    assert main(["predict", str(loop), "--model", str(tiny_int8_model)]) == 2
    err = capsys.readouterr().err
    assert "loop.jpg: symbolic link loop" in err and "not found" not in err
    with pytest.raises(DataError) as info:
        load_dataset(loop)
    assert "not found" not in str(info.value) and "symbolic links" in str(info.value)


@pytest.mark.parametrize("command", ["predict", "video", "convert"])
def test_a_bogus_normalization_names_the_option(command, capsys):
    """#12.8: ``--normalization bogus`` blamed the model's "metadata"."""
    with pytest.raises(SystemExit) as info:
        main([command, "x", "--normalization", "bogus"])
    err = capsys.readouterr().err
    assert info.value.code == 2
    assert "argument --normalization: invalid choice: 'bogus'" in err and "metadata" not in err


def test_a_bogus_normalization_from_the_api_is_an_option_error():
    """#12.8 below the CLI: the caller's option is wrong, not the model's metadata."""
    with pytest.raises(OptionError, match="unknown normalization 'bogus'; choose from"):
        resolve_metadata(None, (48, 48, 1), 7, labels="fer2013", normalization="bogus")


# --- 10: folder scans take what the command line takes, and count what they skip ---


def test_folder_scan_takes_gif_and_counts_skipped_files(tiny_int8_model, face_drawer, tmp_path, capsys):
    """#12.10: a .gif was skipped silently by folder scans though it works when named."""
    from PIL import Image

    Image.fromarray(face_drawer(120)[:, :, ::-1]).save(tmp_path / "face.gif")
    (tmp_path / "notes.txt").write_text("not an image")
    assert main(["predict", str(tmp_path), "--model", str(tiny_int8_model), "--json"]) == 0
    captured = capsys.readouterr()
    assert [Path(json.loads(line)["file"]).name for line in captured.out.splitlines()] == ["face.gif"]
    assert "1 skipped (not image files)" in captured.err


def test_data_folder_scan_counts_skipped_files(face_drawer, tmp_path, caplog):
    """#12.10 for data sets: other files are counted and reported, not silently passed over."""
    data = _class_folders(tmp_path / "data", {"happy": 2, "sad": 2}, face_drawer)
    (data / "happy" / "README.txt").write_text("notes")
    with caplog.at_level(logging.WARNING, logger="feredge.edge.dataset"):
        dataset = load_dataset(data, make_val=False)
    assert dataset.skipped[NON_IMAGE] == 1
    assert "left out 1 item(s)" in caplog.text and f"1 {NON_IMAGE}" in caplog.text


# --- 9: one exit-code rule: 0 all done, 1 some failed, 2 none done, 130 interrupted ---


def test_convert_with_one_format_of_two_failing_is_a_partial_failure(capsys):
    """#12.9: convert exited 2 when one format failed and another was written; predict exits 1 then."""
    from feredge.cli.options import run_main
    from feredge.convert.converter import FAILED, OK, REJECTED, Outcome, raise_for_outcomes

    def exit_code(*outcomes: Outcome) -> int:
        return run_main("feredge convert", lambda _: raise_for_outcomes(outcomes), SimpleNamespace())

    ok = Outcome("fp32", OK)
    failed = Outcome("int8", FAILED, reason="int8 needs calibration images")
    rejected = Outcome("fp16", REJECTED, reason="macro-F1 drop 0.1 > 0.01")
    assert exit_code(ok) == 0
    assert exit_code(ok, failed) == 1
    assert "1 of 2 formats not written: int8 failed: int8 needs calibration images" in capsys.readouterr().err
    assert exit_code(failed) == 2 and exit_code(rejected) == 2 and exit_code(failed, rejected) == 2


def test_run_main_applies_the_rule_to_every_command(capsys):
    """#12.9: the one policy behind every ``main()``: typed error 2, partial failure 1, Ctrl-C 130."""
    from feredge.cli.options import run_main
    from feredge.edge.errors import PartialFailure

    def raising(exc: BaseException):
        def run(_):
            raise exc

        return run

    assert run_main("feredge x", raising(KeyboardInterrupt()), SimpleNamespace()) == 130
    assert run_main("feredge x", raising(PartialFailure("1 of 2 failed")), SimpleNamespace()) == 1
    assert run_main("feredge x", raising(DataError("no images")), SimpleNamespace()) == 2
    err = capsys.readouterr().err
    assert "feredge x: interrupted" in err and "feredge x: error: 1 of 2 failed" in err
    assert "Traceback" not in err
