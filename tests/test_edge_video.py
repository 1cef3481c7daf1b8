"""Video: tracking and smoothing, detection every N frames, output files that stay playable."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
from synthetic import frame_count

from feredge.edge import video
from feredge.edge.errors import VideoError
from feredge.edge.labels import FER2013
from feredge.edge.options import VideoOptions
from feredge.edge.recognizer import EmotionRecognizer, Face, face_from_scores
from feredge.edge.track import FaceTracker, greedy_match, iou
from feredge.edge.video import LatestFrameReader, process_video

pytestmark = pytest.mark.edge  # needs only `pip install .`: .ci/run also runs it in an edge-only venv


def face(box, label: str, p: float = 0.8) -> Face:
    probs = np.full(len(FER2013), (1 - p) / (len(FER2013) - 1), np.float32)
    probs[FER2013.index(label)] = p
    return face_from_scores(box, FER2013, probs)


def write_clip(path: Path, frames: list[np.ndarray], fps: float = 15.0) -> Path:
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


@pytest.fixture(scope="module")
def clip(face_scene, tmp_path_factory) -> Path:
    scene, _ = face_scene
    frames = [np.roll(scene, 2 * i, axis=1) for i in range(12)]
    return write_clip(tmp_path_factory.mktemp("video") / "clip.mp4", frames)


@pytest.fixture(scope="module")
def recognizer(tiny_int8_model):
    return EmotionRecognizer(tiny_int8_model, threads=1)


def test_iou():
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert iou((0, 0, 10, 10), (20, 20, 5, 5)) == 0.0
    assert iou((0, 0, 10, 10), (5, 0, 10, 10)) == pytest.approx(50 / 150)


def test_smoothing_keeps_the_label_through_a_one_frame_blip():
    tracker = FaceTracker(FER2013, alpha=0.4)
    box = (10, 10, 50, 50)
    labels = [tracker.update([face(box, lab)])[0].label for lab in ["happy", "happy", "sad", "happy"]]
    assert labels == ["happy"] * 4
    # the EMA: 0.4 * new + 0.6 * old
    tracker = FaceTracker(FER2013, alpha=0.4)
    tracker.update([face(box, "happy", 0.9)])
    (smoothed,) = tracker.update([face(box, "sad", 0.9)])
    assert smoothed.scores["happy"] == pytest.approx(0.6 * 0.9 + 0.4 * 0.1 / 6, abs=1e-5)
    assert smoothed.label == "happy"


def test_sustained_change_switches_the_label():
    tracker = FaceTracker(FER2013, alpha=0.4)
    box = (10, 10, 50, 50)
    labels = [tracker.update([face(box, lab)])[0].label for lab in ["happy"] * 3 + ["sad"] * 4]
    assert labels[:3] == ["happy"] * 3 and labels[-1] == "sad"


def test_tracks_follow_boxes_not_list_order():
    tracker = FaceTracker(FER2013)
    left, right = (0, 0, 50, 50), (200, 0, 50, 50)
    first = tracker.update([face(left, "happy"), face(right, "sad")])
    moved = tracker.update([face((205, 2, 50, 50), "sad"), face((3, 1, 50, 50), "happy")])
    assert [f.track_id for f in moved] == [first[1].track_id, first[0].track_id]
    assert sorted(tracker.boxes) == [(3, 1, 50, 50), (205, 2, 50, 50)]


def test_greedy_match_takes_the_best_pairs_one_to_one_until_one_is_refused():
    ranked = [(0.9, 0, 1), (0.8, 1, 1), (0.7, 0, 0), (0.6, 1, 0), (0.2, 2, 2)]
    assert greedy_match(ranked, lambda overlap: overlap >= 0.5) == {0: 1, 1: 0}  # each side once, (2, 2) refused
    assert greedy_match([(0.5, 0, 0), (0.1, 1, 1)], lambda shift: shift < 0.3) == {}  # stops at the first refusal


def test_lost_track_resumes_briefly_then_is_dropped():
    tracker = FaceTracker(FER2013, max_missed=1)
    box = (0, 0, 50, 50)
    (first,) = tracker.update([face(box, "happy")])
    assert tracker.update([]) == [] and tracker.boxes == []
    assert tracker.update([face(box, "sad")])[0].track_id == first.track_id
    tracker.update([])
    tracker.update([])
    assert tracker.update([face(box, "sad")])[0].track_id != first.track_id


def test_bad_smoothing():
    with pytest.raises(ValueError, match="alpha"):
        FaceTracker(FER2013, alpha=0.0)


def test_detection_every_n_frames_with_boxes_carried(recognizer, clip, tmp_path):
    calls = []
    detect = recognizer.detector.detect_faces
    recognizer.detector.detect_faces = lambda image: calls.append(1) or detect(image)
    records = []
    out = tmp_path / "annotated.mp4"
    try:
        summary = process_video(recognizer, str(clip), VideoOptions(detect_every=4), out=out, on_frame=records.append)
    finally:
        recognizer.detector.detect_faces = detect
    assert summary.frames == 12 and not summary.interrupted
    assert [r.detected for r in records] == [i % 4 == 0 for i in range(12)]
    assert len(calls) == 3
    assert all(len(r.faces) == 2 for r in records)
    ids = {f.track_id for r in records for f in r.faces}
    assert len(ids) == 2
    assert frame_count(out) == 12
    record = records[1].to_dict()
    assert set(record) == {"frame", "time", "fps", "detected", "faces", "timings"}
    assert {"box", "label", "confidence", "scores", "track_id"} == set(record["faces"][0])


def test_ctrl_c_stops_cleanly_and_the_output_stays_playable(recognizer, clip, tmp_path):
    out = tmp_path / "partial.mp4"

    def interrupt(record):
        if record.index == 4:
            raise KeyboardInterrupt

    summary = process_video(recognizer, str(clip), out=out, on_frame=interrupt)
    assert summary.interrupted and summary.frames == 5
    assert frame_count(out) == 4


def test_max_frames(recognizer, clip):
    assert process_video(recognizer, str(clip), VideoOptions(max_frames=3)).frames == 3


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "file not found"), (b"", "empty"), (b"not a video at all\n" * 50, "cannot open video file")],
    ids=["missing", "zero-bytes", "text-as-mp4"],
)
def test_video_that_cannot_be_opened(recognizer, tmp_path, content, message):
    path = tmp_path / "clip.mp4"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(VideoError, match=message) as info:
        process_video(recognizer, str(path))
    assert str(path) in str(info.value)


def test_a_video_source_that_is_not_a_regular_file_says_what_it_is(recognizer, tmp_path):
    fifo = tmp_path / "pipe.mp4"
    os.mkfifo(fifo)  # opening it would block: refused from stat
    sources = {tmp_path: "is a directory, not a video", fifo: "not a regular file (a FIFO); a video must be a file"}
    if Path("/dev/null").exists():
        sources[Path("/dev/null")] = "not a regular file (a character device)"
    for source, message in sources.items():
        with pytest.raises(VideoError) as info:
            process_video(recognizer, str(source))
        assert str(info.value).startswith(f"{source}: {message}")


def test_unsupported_output_type(recognizer, clip, tmp_path):
    with pytest.raises(VideoError, match="unsupported output type"):
        process_video(recognizer, str(clip), out=tmp_path / "out.gif")


def test_show_without_display_is_ignored(recognizer, clip, monkeypatch, caplog):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert process_video(recognizer, str(clip), VideoOptions(max_frames=2), show=True).frames == 2
    assert "--show ignored" in caplog.text


# --- live sources: stale frames are dropped; outputs appear only when complete ---


class FakeCamera:
    """A capture that delivers its first frame, then the rest as fast as they are read once ``go`` is
    set, then ends and sets ``exhausted``."""

    def __init__(self, frames: list[np.ndarray]) -> None:
        self.frames = list(frames)
        self.delivered = 0
        self.go = threading.Event()
        self.exhausted = threading.Event()
        self.released = False

    def read(self):
        if self.delivered:
            assert self.go.wait(10)
        if not self.frames:
            self.exhausted.set()
            return False, None
        self.delivered += 1
        return True, self.frames.pop(0)

    def get(self, prop) -> float:
        return 30.0

    def release(self) -> None:
        self.released = True


def numbered(count: int) -> list[np.ndarray]:
    return [np.full((8, 8, 3), i, np.uint8) for i in range(count)]


def test_latest_frame_reader_skips_to_the_newest_frame():
    camera = FakeCamera(numbered(10))
    reader = LatestFrameReader(camera)
    ok, first = reader.read()
    assert ok and first[0, 0, 0] == 0
    camera.go.set()
    assert camera.exhausted.wait(10)
    ok, newest = reader.read()
    assert ok and newest[0, 0, 0] == 9
    assert reader.read() == (False, None)
    reader.close()
    assert camera.released
    assert reader.dropped == 10 - 2


def test_a_slow_consumer_of_a_live_source_processes_only_current_frames(recognizer, face_scene, monkeypatch):
    camera = FakeCamera([face_scene[0].copy() for _ in range(10)])
    monkeypatch.setattr(video, "open_capture", lambda source: camera)

    def slow(record):  # the camera delivers all other frames while the first one is processed
        if record.index == 0:
            camera.go.set()
            assert camera.exhausted.wait(10)

    summary = process_video(recognizer, "0", on_frame=slow)
    assert (summary.frames, summary.dropped) == (2, 8)
    assert camera.released


def test_a_file_is_read_in_full_however_slow(recognizer, face_scene, monkeypatch):
    camera = FakeCamera([face_scene[0].copy() for _ in range(5)])
    camera.go.set()
    monkeypatch.setattr(video, "open_capture", lambda source: camera)
    summary = process_video(recognizer, "clip.mp4", on_frame=lambda record: None)
    assert (summary.frames, summary.dropped) == (5, 0)
    assert video.is_live("0") and video.is_live("rtsp://cam/1") and not video.is_live("file:///a.mp4")


def test_out_is_written_under_a_temporary_name_and_moved_into_place(recognizer, clip, tmp_path):
    out = tmp_path / "result.mp4"
    seen = []

    def look(record):
        seen.append((out.exists(), sorted(p.name for p in tmp_path.iterdir())))

    process_video(recognizer, str(clip), VideoOptions(max_frames=3), out=out, on_frame=look)
    assert all(not exists for exists, _ in seen)
    assert any(name.endswith(".part.mp4") for name in seen[-1][1])
    assert [p.name for p in tmp_path.iterdir()] == ["result.mp4"] and frame_count(out) == 3


def test_an_error_midway_leaves_no_output_file(recognizer, clip, tmp_path):
    def fail(record):
        if record.index == 2:
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        process_video(recognizer, str(clip), out=tmp_path / "result.mp4", on_frame=fail)
    assert list(tmp_path.iterdir()) == []
