"""Video and camera streams: capture, detection every N frames, annotated output.

Detection is the expensive stage, so it runs every ``detect_every`` frames and the tracked boxes
(``edge/track.py``) are carried in between; the emotion model still runs on every frame.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from feredge.edge.atomic import atomic_path
from feredge.edge.draw import annotate
from feredge.edge.errors import OptionError, VideoError
from feredge.edge.outputs import check_writable_dir
from feredge.edge.recognizer import EmotionRecognizer, Face, StageTimings
from feredge.edge.track import FaceTracker

log = logging.getLogger(__name__)

WRITER_CODECS = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG"}
FALLBACK_FPS = 25.0


@dataclass
class FrameRecord:
    """What happened on one frame: for ``--json`` and for callers of ``process_video``."""

    index: int
    fps: float
    detected: bool
    faces: list[Face]
    timings: StageTimings

    def to_dict(self) -> dict[str, Any]:
        return {
            "frame": self.index,
            "fps": round(self.fps, 2),
            "detected": self.detected,
            "faces": [face.to_dict() for face in self.faces],
            "timings": {k: round(v, 3) for k, v in self.timings.as_dict().items()},
        }


@dataclass
class VideoSummary:
    frames: int = 0
    seconds: float = 0.0
    interrupted: bool = False
    output: Path | None = None
    dropped: int = 0  # frames of a live source skipped because newer ones had arrived
    label_counts: Counter[str] = field(default_factory=Counter)  # label -> frames it was shown on a face

    @property
    def mean_fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


def open_capture(source: str) -> cv2.VideoCapture:
    """A capture for a camera index (``0``), a stream URL (``rtsp://``, ``http://``) or a video file."""
    if source.isdigit():
        capture, problem = cv2.VideoCapture(int(source)), "cannot open camera (none with this index, or busy)"
    elif "://" in source:
        capture, problem = cv2.VideoCapture(source), "cannot open stream (unreachable or unsupported)"
    else:
        path = Path(source)
        if not path.is_file():
            raise VideoError(f"{source}: video file not found")
        if path.stat().st_size == 0:
            raise VideoError(f"{source}: empty (0-byte) video file")
        capture, problem = cv2.VideoCapture(str(path)), "cannot open video file (unknown format or corrupt)"
    if not capture.isOpened():
        capture.release()
        raise VideoError(f"{source}: {problem}")
    return capture


def check_output(path: Path) -> None:
    """Refuse an output type without a codec, or a folder that cannot be written, before any work."""
    if path.suffix.lower() not in WRITER_CODECS:
        raise VideoError(f"{path}: unsupported output type; use one of {', '.join(WRITER_CODECS)}")
    check_writable_dir(path.parent, "the video")


def open_writer(path: Path, fps: float, size: tuple[int, int]) -> cv2.VideoWriter:
    """An OpenCV writer for ``.mp4`` (mp4v) or ``.avi`` (MJPG) at ``path`` itself (``process_video``
    gives it a temporary name)."""
    check_output(path)
    codec = WRITER_CODECS[path.suffix.lower()]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec), fps, size)
    if not writer.isOpened():
        raise VideoError(f"{path}: cannot write video with codec {codec}")
    return writer


def display_available() -> bool:
    """True where ``cv2.imshow`` can open a window (a display, and an OpenCV build with GUI)."""
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False
    try:
        cv2.namedWindow("feredge", cv2.WINDOW_NORMAL)
    except cv2.error:
        return False
    return True


def is_live(source: str) -> bool:
    """A camera index or a stream URL (not ``file://``): frames arrive in real time and can go stale."""
    return source.isdigit() or ("://" in source and not source.lower().startswith("file://"))


class LatestFrameReader:
    """Reads a live capture on its own thread and keeps only the newest frame.

    When processing is slower than the camera, the frames that arrive meanwhile replace each other
    (``dropped`` counts them) instead of queueing in the driver's buffer, so each processed frame is
    the current one rather than one from further and further back. The reader thread owns the
    capture and releases it when it stops: ``close()`` asks it to stop after its current read.
    """

    def __init__(self, capture: cv2.VideoCapture) -> None:
        self._capture = capture
        self._changed = threading.Condition()
        self._frame: np.ndarray | None = None
        self._ended = False
        self._stopping = False
        self.dropped = 0
        self._thread = threading.Thread(target=self._run, name="feredge-capture", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stopping:
                ok, frame = self._capture.read()
                with self._changed:
                    if not ok:
                        break
                    if self._frame is not None:
                        self.dropped += 1
                    self._frame = frame
                    self._changed.notify_all()
        except Exception:  # a backend failing mid-stream ends the stream like a failed read
            log.exception("reading the video source failed")
        finally:
            with self._changed:
                self._ended = True
                self._changed.notify_all()
            self._capture.release()

    def read(self) -> tuple[bool, np.ndarray | None]:
        """The newest frame not returned yet, waiting for one; ``(False, None)`` once the source ended."""
        with self._changed:
            while self._frame is None and not self._ended:
                self._changed.wait(0.5)  # short waits keep Ctrl-C responsive
            frame, self._frame = self._frame, None
        return frame is not None, frame

    def close(self, timeout: float = 5.0) -> None:
        self._stopping = True
        self._thread.join(timeout)


def process_video(
    recognizer: EmotionRecognizer,
    source: str,
    *,
    detect_every: int = 3,
    smoothing: float = 0.4,
    out: str | Path | None = None,
    show: bool = False,
    max_frames: int | None = None,
    on_frame: Callable[[FrameRecord], None] | None = None,
    drop_stale: bool | None = None,
) -> VideoSummary:
    """Run ``recognizer`` over a video until it ends, ``max_frames`` or Ctrl-C (a clean stop).

    ``out`` is written under a temporary name beside it and moved into place when the loop ends,
    Ctrl-C included, so it is either absent or complete and playable; an error leaves no file.
    ``drop_stale`` (default: on for cameras and stream URLs, off for files) processes only the newest
    frame of a live source when processing falls behind (``LatestFrameReader``); files are read in
    full. ``on_frame`` receives each frame's record.
    """
    if detect_every < 1:
        raise OptionError(f"detect_every must be >= 1, got {detect_every}")
    if max_frames is not None and max_frames < 1:
        raise OptionError(f"max_frames must be >= 1, got {max_frames}")
    tracker = FaceTracker(recognizer.labels, alpha=smoothing)
    summary = VideoSummary(output=Path(out) if out is not None else None)
    if summary.output is not None:
        check_output(summary.output)
    capture = open_capture(source)
    source_fps = _source_fps(capture)
    reader = LatestFrameReader(capture) if (is_live(source) if drop_stale is None else drop_stale) else None
    read = reader.read if reader is not None else capture.read
    if show and not display_available():
        log.warning("no display available (or OpenCV is the headless build): --show ignored")
        show = False
    fps = 0.0
    start = last = time.perf_counter()
    with contextlib.ExitStack() as outputs:  # on leaving: release the writer, then move the file into place
        writer = None
        try:
            ok, frame = read()
            if not ok:
                raise VideoError(f"{source}: opened, but no frame could be read")
            for index in itertools.count():
                detected = index % detect_every == 0
                faces = tracker.update(recognizer.predict(frame, boxes=None if detected else tracker.boxes))
                summary.label_counts.update(face.label for face in faces)
                now = time.perf_counter()
                rate = 1.0 / max(now - last, 1e-6)  # whole loop: read, infer, draw, write
                fps, last = (rate if fps == 0.0 else 0.9 * fps + 0.1 * rate), now
                summary.frames += 1
                if on_frame is not None:
                    on_frame(FrameRecord(index, fps, detected, faces, recognizer.timings))
                if summary.output is not None or show:
                    annotate(frame, faces, fps)
                if summary.output is not None:
                    if writer is None:
                        partial = outputs.enter_context(atomic_path(summary.output))
                        writer = open_writer(partial, source_fps, (frame.shape[1], frame.shape[0]))
                        outputs.callback(writer.release)
                    writer.write(frame)
                if show:
                    cv2.imshow("feredge", frame)
                    if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
                        break
                if max_frames is not None and summary.frames >= max_frames:
                    break
                ok, frame = read()
                if not ok:
                    break
        except KeyboardInterrupt:
            summary.interrupted = True
        finally:
            summary.seconds = time.perf_counter() - start
            if reader is not None:
                reader.close()
                summary.dropped = reader.dropped
            else:
                capture.release()
            if show:
                cv2.destroyAllWindows()
    return summary


def _source_fps(capture: cv2.VideoCapture) -> float:
    """The stream's frame rate for the output file; cameras and some streams report 0 or nonsense."""
    rate = capture.get(cv2.CAP_PROP_FPS)
    return rate if math.isfinite(rate) and 0 < rate < 1000 else FALLBACK_FPS
