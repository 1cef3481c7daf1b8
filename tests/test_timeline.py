"""Video timelines: the documented columns (CSV, Parquet), tracks that stay with their faces through
a crossing and a few missed frames, ``--summary``, ``--plot``, ``--sample-fps`` and ``analyze_video``."""

from __future__ import annotations

import csv
import io
import itertools
import json
import sys
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from feredge.cli import main
from feredge.edge.errors import OptionError
from feredge.edge.labels import FER2013
from feredge.edge.options import RecognizerOptions, VideoOptions
from feredge.edge.recognizer import StageTimings, face_from_scores
from feredge.edge.timeline import TimelineRecorder, analyze_video, timeline_columns
from feredge.edge.video import FrameRecord

pytestmark = pytest.mark.edge  # needs only `pip install .`: .ci/run also runs it in an edge-only venv

FPS = 10.0
FRAMES = 24
SIDE = 72
SIZE = (320, 240)
LEFT_Y, RIGHT_Y = 30, 70  # the two faces cross at different heights, so a box tells which face it is
HIDDEN = range(5, 7)  # frames without the left-to-right face: the detector misses it there
COLUMNS = [
    *("frame", "time_s", "track_id", "x", "y", "w", "h", "detected", "label", "confidence"),
    *FER2013,
    *(f"smoothed_{label}" for label in FER2013),
]


def crossing_frames(face: np.ndarray, frames: int = FRAMES) -> list[np.ndarray]:
    """Two drawn faces crossing: one left to right, one right to left in front of it, so the first is
    hidden (not drawn) while they overlap by more than half; it is also absent on the ``HIDDEN`` frames."""
    width, height = SIZE
    travel = width - SIDE - 20
    out = []
    for i in range(frames):
        frame = np.full((height, width, 3), 90, np.uint8)
        step = round(i * travel / (frames - 1))
        behind = abs(travel - 2 * step) < SIDE / 2
        if i not in HIDDEN and not behind:
            frame[LEFT_Y : LEFT_Y + SIDE, 10 + step : 10 + step + SIDE] = face
        frame[RIGHT_Y : RIGHT_Y + SIDE, 10 + travel - step : 10 + travel - step + SIDE] = face
        out.append(frame)
    return out


def write_avi(path: Path, frames: list[np.ndarray], fps: float = FPS) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, SIZE)
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        return list(reader.fieldnames or []), list(reader)


@pytest.fixture(scope="module")
def crossing(face_drawer, tmp_path_factory) -> Path:
    return write_avi(tmp_path_factory.mktemp("timeline") / "crossing.avi", crossing_frames(face_drawer(SIDE)))


@pytest.fixture(scope="module")
def cli_run(tiny_int8_model, crossing, tmp_path_factory):
    """``feredge video --timeline --summary`` on the crossing clip, detecting on every frame."""
    out = tmp_path_factory.mktemp("cli") / "timeline.csv"
    argv = ["video", str(crossing), "--model", str(tiny_int8_model), "--detect-every", "1", "--threads", "1"]
    stdout, stderr = io.StringIO(), io.StringIO()
    with redirect_stdout(stdout), redirect_stderr(stderr):
        code = main([*argv, "--timeline", str(out), "--summary"])
    header, rows = read_csv(out)
    return code, header, rows, stdout.getvalue(), stderr.getvalue()


def test_timeline_columns_are_the_documented_ones():
    assert timeline_columns(FER2013) == COLUMNS


def test_csv_has_the_documented_columns_and_one_row_per_frame_and_face(cli_run):
    code, header, rows, _, err = cli_run
    assert code == 0 and f"done: {FRAMES} frames" in err
    assert header == COLUMNS
    assert sorted({int(row["frame"]) for row in rows}) == list(range(FRAMES))
    for row in rows:
        assert float(row["time_s"]) == pytest.approx(int(row["frame"]) / FPS, abs=1e-3)
        assert row["detected"] == "True"
        assert all(int(row[key]) > 0 for key in ("w", "h"))
        raw = [float(row[label]) for label in FER2013]
        smoothed = {label: float(row[f"smoothed_{label}"]) for label in FER2013}
        assert sum(raw) == pytest.approx(1.0, abs=0.02) and sum(smoothed.values()) == pytest.approx(1.0, abs=0.02)
        # label and confidence are the smoothed ones the annotated video shows
        assert row["label"] == max(smoothed, key=smoothed.get)
        assert float(row["confidence"]) == pytest.approx(max(smoothed.values()))


def tracks_of(rows) -> dict[int, list[tuple[int, int, int]]]:
    """track id -> [(frame, x, y)] in frame order."""
    tracks: dict[int, list[tuple[int, int, int]]] = {}
    for row in rows:
        tracks.setdefault(int(row["track_id"]), []).append((int(row["frame"]), int(row["x"]), int(row["y"])))
    return {track: sorted(points) for track, points in tracks.items()}


def assert_two_stable_tracks(rows) -> None:
    """Two ids, each at one face's height and moving in its direction from the first frame to the
    last (a box carried before the track knows its velocity stays put)."""
    tracks = tracks_of(rows)
    assert len(tracks) == 2, tracks
    rightward, leftward = sorted(tracks.values(), key=lambda points: points[0][2])
    for points, sign in ((rightward, 1), (leftward, -1)):
        xs, ys = [x for _, x, _ in points], [y for _, _, y in points]
        assert max(ys) - min(ys) < 10, points
        assert all(sign * (b - a) >= 0 for a, b in itertools.pairwise(xs)), points
        assert sign * (xs[-1] - xs[0]) > SIZE[0] // 2, points
        assert points[0][0] == 0 and points[-1][0] == FRAMES - 1
    assert abs(rightward[0][2] - LEFT_Y) < abs(rightward[0][2] - RIGHT_Y)
    assert len(leftward) == FRAMES


def test_track_ids_stay_with_their_faces_across_the_crossing_and_through_misses(cli_run):
    _, _, rows, _, _ = cli_run
    assert_two_stable_tracks(rows)
    hidden = set(range(FRAMES)) - {int(row["frame"]) for row in rows if int(row["y"]) < (LEFT_Y + RIGHT_Y) // 2}
    assert set(HIDDEN) < hidden and max(hidden) > HIDDEN.stop  # absent, then behind the other face


def test_track_ids_survive_detection_every_3_frames(tiny_int8_model, crossing):
    rows = as_records(
        analyze_video(crossing, RecognizerOptions(tiny_int8_model, threads=1), VideoOptions(detect_every=3))
    )
    assert_two_stable_tracks(rows)


def test_summary_prints_each_tracks_share_dominant_emotion_and_duration(cli_run):
    _, _, rows, out, _ = cli_run
    lines = out.splitlines()
    assert len(lines) == 2 and all(line.startswith("track ") for line in lines)
    counts = {track: len(points) for track, points in tracks_of(rows).items()}
    for line in lines:
        track = int(line.split()[1].rstrip(":"))
        labels = [row["label"] for row in rows if int(row["track_id"]) == track]
        dominant = max(set(labels), key=labels.count)
        assert line.startswith(f"track {track}: {dominant} (")
        assert f"{counts[track]} frames" in line and " s, " in line
        share = labels.count(dominant) / len(labels)
        assert f"{dominant} {share:.0%}" in line
    # the longest track comes first
    assert int(lines[0].split()[1].rstrip(":")) == max(counts, key=counts.get)


def test_summary_as_json(tiny_int8_model, crossing, capsys):
    argv = ["video", str(crossing), "--model", str(tiny_int8_model), "--max-frames", "4", "--summary", "--json"]
    assert main(argv) == 0
    *frames, last = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(frames) == 4
    (first, *_) = last["summary"]
    assert set(first) == {"track_id", "frames", "start_s", "end_s", "duration_s", "dominant", "shares"}
    assert first["frames"] == 4 and first["duration_s"] == pytest.approx(0.4)
    assert sum(first["shares"].values()) == pytest.approx(1.0)


def test_sample_fps_skips_frames_and_keeps_their_timestamps(tiny_int8_model, crossing, tmp_path, capsys):
    out = tmp_path / "sampled.csv"
    argv = ["video", str(crossing), "--model", str(tiny_int8_model), "--sample-fps", "2.5", "--timeline", str(out)]
    assert main(argv) == 0
    assert f"done: {FRAMES // 4} frames" in capsys.readouterr().err
    _, rows = read_csv(out)
    frames = sorted({int(row["frame"]) for row in rows})
    assert frames == list(range(0, FRAMES, 4))
    assert {float(row["time_s"]) for row in rows} == {frame / FPS for frame in frames}


def test_carried_frames_are_marked_not_detected(tiny_int8_model, crossing):
    rows = as_records(
        analyze_video(crossing, RecognizerOptions(tiny_int8_model, threads=1), VideoOptions(max_frames=6))
    )
    assert {row["frame"]: row["detected"] for row in rows} == {i: i % 3 == 0 for i in range(6)}


def as_records(table) -> list[dict]:
    return table.to_dict("records") if hasattr(table, "to_dict") else table


def test_analyze_video_returns_a_dataframe_with_pandas(tiny_int8_model, crossing):
    pandas = pytest.importorskip("pandas")
    frame = analyze_video(crossing, RecognizerOptions(tiny_int8_model, threads=1), VideoOptions(max_frames=3))
    assert isinstance(frame, pandas.DataFrame)
    assert list(frame.columns) == COLUMNS
    assert sorted(frame["frame"].unique()) == [0, 1, 2] and frame["track_id"].nunique() == 2


def test_analyze_video_returns_a_list_of_dicts_without_pandas(tiny_int8_model, crossing, monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)  # `import pandas` fails as if it were not installed
    rows = analyze_video(str(crossing), RecognizerOptions(tiny_int8_model, threads=1), VideoOptions(max_frames=3))
    assert isinstance(rows, list) and len(rows) == 6
    assert all(list(row) == COLUMNS for row in rows)
    assert isinstance(rows[0]["frame"], int) and isinstance(rows[0]["happy"], float)


def test_analyze_video_with_min_confidence_labels_uncertain(tiny_int8_model, crossing):
    rows = as_records(
        analyze_video(crossing, RecognizerOptions(tiny_int8_model, min_confidence=0.99), VideoOptions(max_frames=2))
    )
    assert rows and {row["label"] for row in rows} == {"uncertain"}
    assert all(0 < row["confidence"] < 0.99 for row in rows)


def test_analyze_video_writes_the_same_rows_as_csv(tiny_int8_model, crossing, tmp_path):
    out = tmp_path / "rows.csv"
    rows = as_records(
        analyze_video(crossing, RecognizerOptions(tiny_int8_model), VideoOptions(max_frames=3), timeline=out)
    )
    _, written = read_csv(out)
    assert [(int(r["frame"]), int(r["track_id"])) for r in written] == [(r["frame"], r["track_id"]) for r in rows]


def test_parquet_timeline(tiny_int8_model, crossing, tmp_path, capsys):
    parquet = pytest.importorskip("pyarrow.parquet")
    out = tmp_path / "timeline.parquet"
    argv = ["video", str(crossing), "--model", str(tiny_int8_model), "--max-frames", "3", "--timeline", str(out)]
    assert main(argv) == 0
    table = parquet.read_table(out)
    assert table.column_names == COLUMNS and table.num_rows == 6
    assert str(table.schema.field("track_id").type) == "int64"
    assert str(table.schema.field("detected").type) == "bool"


def test_parquet_without_pyarrow_is_refused_before_any_work(tiny_int8_model, crossing, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    out = tmp_path / "timeline.parquet"
    assert main(["video", str(crossing), "--model", str(tiny_int8_model), "--timeline", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "needs pyarrow" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("option", "name", "message"),
    [("--timeline", "t.json", "unsupported timeline type"), ("--plot", "p.svg", "name it *.png")],
)
def test_unsupported_output_types_are_one_line_errors(
    tiny_int8_model, crossing, tmp_path, capsys, option, name, message
):
    assert main(["video", str(crossing), "--model", str(tiny_int8_model), option, str(tmp_path / name)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


@pytest.mark.parametrize(
    ("option", "keyword", "name", "what"),
    [
        ("--out", "out", "d.mp4", "video"),
        ("--timeline", "timeline", "dt.csv", "timeline"),
        ("--plot", "plot", "dp.png", "plot"),
    ],
)
def test_an_output_that_is_an_existing_folder_is_refused_before_any_work(
    crossing, tmp_path, capsys, option, keyword, name, what
):
    folder = tmp_path / name
    folder.mkdir()
    missing_model = str(tmp_path / "missing.tflite")  # loaded only if the outputs pass their check
    assert main(["video", str(crossing), "--model", missing_model, option, str(folder)]) == 2
    message = f"{folder}: is a folder; name a file to write the {what} to"
    assert capsys.readouterr().err == f"feredge video: error: {message}\n"
    with pytest.raises(OptionError, match="is a folder"):
        analyze_video(crossing, RecognizerOptions(missing_model), **{keyword: folder})
    assert list(folder.iterdir()) == []


def record(index: int, time_s: float, length: float | None) -> FrameRecord:
    probs = np.full(len(FER2013), 0.05, np.float32)
    probs[FER2013.index("happy")] = 0.7
    faces = [face_from_scores((10, 10, 50, 50), FER2013, probs, track_id=1)]
    return FrameRecord(index, time_s, 10.0, True, faces, faces, StageTimings(), 12, length)


def test_a_tracks_duration_ends_with_the_video_not_a_sampling_step_past_it():
    clip = TimelineRecorder(FER2013, keep_rows=False)
    for index, time_s in ((0, 0.0), (10, 1.0)):  # a 1.2 s clip sampled at 1 FPS
        clip(record(index, time_s, length=1.2))
    (track,) = clip.summary()
    assert track.duration_s == pytest.approx(1.2)
    assert "(1.2 s, 2 frames, 0.0-1.0 s)" in track.describe()
    live = TimelineRecorder(FER2013, keep_rows=False)  # no known length: one step past the last frame
    for index, time_s in ((0, 0.0), (1, 1.0)):
        live(record(index, time_s, length=None))
    assert live.summary()[0].duration_s == pytest.approx(2.0)


def test_sampled_tracks_end_within_the_video(tiny_int8_model, crossing, capsys):
    argv = ["video", str(crossing), "--model", str(tiny_int8_model), "--sample-fps", "1", "--summary", "--json"]
    assert main(argv) == 0
    *_, last = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert last["summary"] and all(track["end_s"] == 2.0 for track in last["summary"])  # frames 0, 10, 20
    for track in last["summary"]:  # one 1 s step past 2.0 s would be 0.6 s past the end of the 2.4 s clip
        assert track["start_s"] + track["duration_s"] == pytest.approx(FRAMES / FPS)


def test_timeline_refuses_to_overwrite_the_input(tiny_int8_model, tmp_path, face_drawer, capsys):
    clip = write_avi(tmp_path / "clip.avi", crossing_frames(face_drawer(SIDE), frames=3))
    before = clip.read_bytes()
    alias = tmp_path / "alias.csv"
    alias.symlink_to(clip)
    assert main(["video", str(clip), "--model", str(tiny_int8_model), "--timeline", str(alias)]) == 2
    assert "is the input video" in capsys.readouterr().err
    assert clip.read_bytes() == before


def test_plot_writes_a_png_with_a_panel_per_track(tiny_int8_model, crossing, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out = tmp_path / "timeline.png"
    argv = ["video", str(crossing), "--model", str(tiny_int8_model), "--max-frames", "8", "--plot", str(out)]
    assert main(argv) == 0
    assert str(out) in capsys.readouterr().err
    image = cv2.imread(str(out))
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and image is not None
    one = tmp_path / "one.png"
    rows = analyze_video(crossing, RecognizerOptions(tiny_int8_model), VideoOptions(max_frames=8))
    from feredge.plots import plot_timeline

    single = [row for row in as_records(rows) if row["track_id"] == 1]
    plot_timeline(single, one)
    assert image.shape[0] > cv2.imread(str(one)).shape[0]  # two panels are taller than one


def test_a_fast_face_keeps_its_id_between_sparse_detections_but_a_lost_track_is_not_chased():
    from feredge.edge.recognizer import face_from_scores
    from feredge.edge.track import FaceTracker

    def face(x: int, y: int = 0):
        return face_from_scores((x, y, 60, 60), FER2013, np.full(len(FER2013), 1 / len(FER2013), np.float32))

    tracker = FaceTracker(FER2013)
    (first,) = tracker.update([face(0)])
    tracker.update([face(0)])  # a frame without detection: the box is carried where the track was
    (moved,) = tracker.update([face(50)])  # detected again 0.83 sides further: no overlap left
    assert moved.track_id == first.track_id
    tracker = FaceTracker(FER2013)
    (first,) = tracker.update([face(0)])
    tracker.update([])
    tracker.update([])
    (other,) = tracker.update([face(50, 10)])
    assert other.track_id != first.track_id


def test_analyze_video_progress_bar_on_stderr(tiny_int8_model, crossing, capsys):
    analyze_video(crossing, RecognizerOptions(tiny_int8_model), VideoOptions(max_frames=3), progress=True)
    err = capsys.readouterr().err
    assert f"1/{FRAMES} frames" in err and "ETA" in err and err.endswith("\n")


def test_a_video_without_faces_gives_a_header_only_timeline_and_says_so(tiny_int8_model, tmp_path, capsys):
    blank = write_avi(tmp_path / "blank.avi", [np.full((SIZE[1], SIZE[0], 3), 90, np.uint8)] * 3)
    out = tmp_path / "empty.csv"
    assert main(["video", str(blank), "--model", str(tiny_int8_model), "--timeline", str(out), "--summary"]) == 0
    assert capsys.readouterr().out.strip() == "no face was found in the video"
    assert read_csv(out) == (COLUMNS, [])


def test_analyze_video_takes_the_recognizer_options_of_the_cli(tiny_float_model, crossing):
    options = RecognizerOptions(tiny_float_model, labels="fer2013", min_face=100)
    rows = as_records(analyze_video(crossing, options, VideoOptions(max_frames=2)))
    assert rows == []  # every face is smaller than min_face
    rows = as_records(analyze_video(crossing, replace(options, min_face=None), VideoOptions(max_frames=2)))
    assert len(rows) == 4 and list(rows[0])[-len(FER2013) :] == [f"smoothed_{label}" for label in FER2013]


def test_frame_progress_draws_a_files_frames_with_labels_and_stays_silent_for_a_live_source(capsys):
    from types import SimpleNamespace

    from feredge.edge.progress import FrameProgress

    def record(index, total):
        return SimpleNamespace(index=index, total=total, fps=12.5, faces=[SimpleNamespace(label="happy")])

    live = FrameProgress(labels=True)
    live(record(0, None))
    live.close()
    assert capsys.readouterr().err == ""
    bar = FrameProgress(labels=True)
    bar(record(1, 4))
    bar.close()
    err = capsys.readouterr().err
    assert "2/4 frames" in err and "12.5 FPS" in err and "happy" in err and err.endswith("\n")


@pytest.mark.parametrize("json_out", [False, True])
def test_feredge_video_draws_its_bar_on_a_terminal_but_not_beside_json(
    tiny_int8_model, crossing, capsys, monkeypatch, json_out
):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)  # capsys' stderr stands in for a terminal
    argv = [
        "video",
        str(crossing),
        "--model",
        str(tiny_int8_model),
        "--max-frames",
        "3",
        *(["--json"] if json_out else []),
    ]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert (f"/{FRAMES} frames" in err) is not json_out and ("\r" in err) is not json_out
