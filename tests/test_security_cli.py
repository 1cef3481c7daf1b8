"""Hostile and unlucky inputs to the command line (issue 29): each case failed before its fix."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from collections import namedtuple
from pathlib import Path

import cv2
import numpy as np
import pytest

from feredge.cli import main, parse_args
from feredge.cli.options import MAX_THREADS, printable
from feredge.edge.decode import IMAGE_SUFFIXES

pytestmark = pytest.mark.edge


def _python(code: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def scene_jpg(face_scene, tmp_path) -> Path:
    ok, data = cv2.imencode(".jpg", face_scene[0])
    assert ok
    path = tmp_path / "scene.jpg"
    path.write_bytes(data.tobytes())
    return path


@pytest.fixture
def clip(face_drawer, tmp_path) -> Path:
    frame = np.full((120, 160, 3), 90, np.uint8)
    frame[10:110, 30:130] = face_drawer(100)
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (160, 120))
    for _ in range(6):
        writer.write(frame)
    writer.release()
    return path


# --- 3: a file:// URL to the input is the input ---


@pytest.mark.parametrize("form", ["file://{}", "file:{}", "file://localhost{}"])
def test_video_refuses_to_overwrite_its_input_named_by_a_file_url(tiny_int8_model, clip, capsys, form):
    before = clip.read_bytes()
    source = form.format(clip)
    assert main(["video", source, "--model", str(tiny_int8_model), "--out", str(clip)]) == 2
    assert f"{clip}: is the input video {source}" in capsys.readouterr().err
    assert clip.read_bytes() == before


# --- 7: --threads has an upper bound, and huge numbers are a usage error ---


@pytest.mark.parametrize("value", ["100000", str(MAX_THREADS + 1), "9" * 24])
def test_thread_counts_above_the_bound_are_usage_errors(value, capsys):
    with pytest.raises(SystemExit) as info:
        main(["predict", "x.jpg", "--threads", value])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert f"argument --threads: expected a whole number from 1 to {MAX_THREADS}" in err and "Traceback" not in err


def test_the_thread_bound_is_4_per_core_and_at_most_256():
    assert min(256, 4 * (os.cpu_count() or 1)) == MAX_THREADS
    assert parse_args(["predict", "x.jpg", "--threads", str(MAX_THREADS)]).threads == MAX_THREADS


# --- 11 and 18: SIGTERM while an annotated copy is written leaves no temporary file ---

KILL_DURING_WRITE = (
    "import os, signal, sys\n"
    "import feredge.edge.atomic as atomic\n"
    "real_fsync = atomic.os.fsync\n"
    "def fsync(fd):\n"
    "    print('temporary:', sorted(os.listdir(sys.argv[-1])), file=sys.stderr, flush=True)\n"
    "    os.kill(os.getpid(), signal.SIGTERM)\n"
    "    real_fsync(fd)\n"
    "atomic.os.fsync = fsync\n"
    "from feredge.cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


def test_sigterm_during_annotate_removes_the_partial_copy(tiny_int8_model, scene_jpg, tmp_path):
    out = tmp_path / "annotated"
    proc = _python(
        KILL_DURING_WRITE, "predict", str(scene_jpg), "--model", str(tiny_int8_model), "--annotate", str(out)
    )
    assert proc.returncode == 130, proc.stderr
    assert "feredge predict: interrupted" in proc.stderr and "Traceback" not in proc.stderr
    assert list(out.iterdir()) == []
    temporary = json.loads(proc.stderr.split("temporary: ")[1].splitlines()[0].replace("'", '"'))
    assert len(temporary) == 1 and temporary[0].startswith(".scene.jpg.")
    assert Path(temporary[0]).suffix.lower() not in IMAGE_SUFFIXES  # a later scan would not take it as an input


def test_a_second_sigterm_does_not_cut_the_clean_up_short():
    code = (
        "import os, signal, time\n"
        "from feredge.edge.atomic import sigterm_as_interrupt\n"
        "with sigterm_as_interrupt():\n"
        "    try:\n"
        "        os.kill(os.getpid(), signal.SIGTERM)\n"
        "        time.sleep(5)\n"
        "    except KeyboardInterrupt:\n"
        "        os.kill(os.getpid(), signal.SIGTERM)  # during the clean-up\n"
        "        time.sleep(0.05)\n"
        "        print('cleaned up', flush=True)\n"
    )
    proc = _python(code)
    assert proc.returncode == 0 and proc.stdout == "cleaned up\n", proc


# --- 14: names are printed escaped ---


def test_a_newline_in_a_file_name_cannot_fake_a_line(tiny_int8_model, scene_jpg, tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(scene_jpg, folder / "a\nsummary: 0 images.jpg")
    (folder / "b\x1b[2J.jpg").write_bytes(b"not an image")
    assert main(["predict", str(folder), "--model", str(tiny_int8_model)]) == 1
    captured = capsys.readouterr()
    assert sum(line.startswith("summary:") for line in captured.err.splitlines()) == 1
    assert not any(line.startswith("summary:") for line in captured.out.splitlines())
    assert "a\\nsummary: 0 images.jpg" in captured.out and "b\\x1b[2J.jpg" in captured.err
    assert "\x1b" not in captured.out + captured.err


def test_printable_escapes_controls_bidi_and_undecodable_bytes():
    name = "x\r\ty\u202ez" + b"\xff".decode("utf-8", "surrogateescape") + " é"
    assert printable(name) == "x\\r\\ty\\u202ez\\xff é"
    printable(name).encode("utf-8")  # printing it cannot fail


# --- 16: a full disk names the file, and a video that could not be written is not kept ---


def test_video_on_a_full_disk_names_the_file_and_keeps_nothing(tiny_int8_model, clip, tmp_path, monkeypatch, capsys):
    real_writer = cv2.VideoWriter

    class FullDisk:  # OpenCV's writer drops a frame it cannot write and says nothing
        fourcc = staticmethod(real_writer.fourcc)

        def __init__(self, *args) -> None:
            self._writer = real_writer(*args)

        def isOpened(self) -> bool:
            return self._writer.isOpened()

        def write(self, frame) -> None:
            pass

        def release(self) -> None:
            self._writer.release()

    monkeypatch.setattr(cv2, "VideoWriter", FullDisk)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: namedtuple("usage", "total used free")(1, 1, 0))
    out = tmp_path / "out" / "annotated.mp4"
    assert main(["video", str(clip), "--model", str(tiny_int8_model), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"feredge video: error: {out}: cannot write the video: no space left on device" in err
    assert list(out.parent.iterdir()) == []


def test_timeline_on_a_full_disk_names_the_file(tiny_int8_model, clip, tmp_path, monkeypatch, capsys):
    def full(self, rows):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(csv.DictWriter, "writerows", full)
    timeline = tmp_path / "t.csv"
    assert main(["video", str(clip), "--model", str(tiny_int8_model), "--timeline", str(timeline)]) == 2
    err = capsys.readouterr().err
    assert f"feredge video: error: {timeline}: cannot write the timeline: No space left on device" in err
    assert list(tmp_path.iterdir()) == [clip]


# --- 17: Ctrl-C during start-up ---


def test_ctrl_c_during_start_up_is_one_line():
    code = (
        "import sys\n"
        "import feredge.cli.predict as predict\n"
        "def configure(parser):\n"
        "    raise KeyboardInterrupt\n"
        "predict.configure = configure\n"
        "from feredge.cli import main\n"
        "sys.exit(main(['predict', 'x.jpg']))\n"
    )
    proc = _python(code)
    assert proc.returncode == 130 and proc.stderr == "feredge: interrupted\n", proc


# --- 20: broken links and FIFOs with an image suffix are failed inputs, named for what they are ---


def test_broken_links_and_fifos_in_a_folder_are_failed_inputs(tiny_int8_model, scene_jpg, tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(scene_jpg, folder / "good.jpg")
    (folder / "gone.jpg").symlink_to(tmp_path / "deleted.jpg")
    os.mkfifo(folder / "pipe.png")
    (folder / "notes.txt").write_text("skipped")
    assert main(["predict", str(folder), "--model", str(tiny_int8_model), "--json"]) == 1
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if line.startswith("error:")]
    assert errors == [
        f"error: {folder / 'gone.jpg'}: broken symbolic link to {tmp_path / 'deleted.jpg'}; an image must be a file",
        f"error: {folder / 'pipe.png'}: not a regular file (a FIFO); an image must be a file",
    ]
    assert "1 images · 2 faces · 2 failed · 1 skipped (not image files)" in captured.err
    records = [json.loads(line) for line in captured.out.splitlines()]
    assert sorted(Path(r["file"]).name for r in records if "error" in r) == ["gone.jpg", "pipe.png"]


# --- the table ---


def test_a_missing_file_prints_no_table_header(tiny_int8_model, tmp_path, capsys):
    assert main(["predict", str(tmp_path / "nonexistent.jpg"), "--model", str(tiny_int8_model)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "nonexistent.jpg: file not found" in captured.err


def test_wide_boxes_keep_the_table_aligned(capsys):
    from feredge.cli.predict import Table

    Face = namedtuple("Face", "box label confidence")
    faces = [Face((1, 2, 3, 4), "happy", 0.5), Face((12000, 19000, 30000, 41000), "uncertain", 0.25)]
    Table(8, 9).print_rows("a.jpg", faces)
    header, *rows = capsys.readouterr().out.splitlines()
    for row, face in zip(rows, faces, strict=True):
        assert row.index(face.label) == header.index("label")
        assert row.index(f"{face.confidence:.2f}") == header.index("conf")
        assert row.index("(") == header.index("box")


# --- bench --data has no default that exists only beside this checkout ---


def test_bench_measures_accuracy_only_with_data(tiny_int8_model, tmp_path, monkeypatch):
    for extra in ("matplotlib", "psutil"):  # feredge bench refuses to start without the bench extra
        pytest.importorskip(extra, reason="feredge bench needs the bench extra; the edge-only job does not install it")
    import feredge.benchmarks.bench as bench
    from feredge.benchmarks.errors import BenchError

    val = tmp_path / "shared" / "data" / "fer2013" / "val" / "happy"
    val.mkdir(parents=True)
    cwd = tmp_path / "work"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    seen = []

    def stop(subjects, settings, data, photos):
        seen.append(data)
        raise BenchError("stopped before measuring")

    monkeypatch.setattr(bench, "run_benchmark", stop)
    assert main(["bench", "--models", str(tiny_int8_model), "--out", str(tmp_path / "results")]) == 2
    assert seen == [None]
