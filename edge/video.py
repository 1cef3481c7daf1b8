"""Video and camera streams: capture, detection every N frames, annotated output.

Detection is the expensive stage, so it runs every ``detect_every`` frames and the tracked boxes
(``edge/track.py``) are carried in between, moved on at each face's velocity; the emotion model
still runs on every processed frame. ``sample_fps`` processes fewer frames: the others are skipped
without being converted to pixels. A file is read on its own thread, a few frames ahead, so
decoding overlaps detection and inference.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import os
import queue
import shutil
import sys
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from feredge.edge.atomic import atomic_path
from feredge.edge.decode import input_file_problem
from feredge.edge.detectors import Box
from feredge.edge.draw import annotate
from feredge.edge.errors import OptionError, OutputError, VideoError
from feredge.edge.options import VideoOptions
from feredge.edge.outputs import check_writable_dir
from feredge.edge.recognizer import EmotionRecognizer, Face, StageTimings
from feredge.edge.track import FaceTracker

log = logging.getLogger(__name__)

# .webm (VP8) is the one type OpenCV's pip wheels write that browsers also play (the demo uses it).
WRITER_CODECS = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".webm": "VP80"}
FALLBACK_FPS = 25.0
# A track whose face is missed for up to this long (detector miss, a face passing in front) keeps its id.
TRACK_MEMORY_S = 1.0


@dataclass
class FrameRecord:
    """What happened on one processed frame: for ``--json``, timelines and callers of ``process_video``.

    ``faces`` are the tracked faces (smoothed scores, ``track_id``) and ``raw`` the same faces with
    this frame's own scores, in the same order. ``index`` counts the source's frames (a file's frame
    number, also when ``sample_fps`` skips some), ``time`` is seconds into the video (a file's
    timestamp, or since the start for a live source), ``total`` is the file's frame count and
    ``length`` its duration in seconds (both ``None`` for a live source or when the file does not say).
    """

    index: int
    time: float
    fps: float
    detected: bool
    faces: list[Face]
    raw: list[Face]
    timings: StageTimings
    total: int | None = None
    length: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "frame": self.index,
            "time": round(self.time, 3),
            "fps": round(self.fps, 2),
            "detected": self.detected,
            "faces": [face.to_dict() for face in self.faces],
            "timings": self.timings.rounded(),
        }


@dataclass
class VideoSummary:
    frames: int = 0  # processed frames
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
        if (not_a_file := input_file_problem(path, "a video")) is not None:
            raise VideoError(f"{source}: {not_a_file}")
        if path.stat().st_size == 0:
            raise VideoError(f"{source}: empty (0-byte) video file")
        capture, problem = cv2.VideoCapture(str(path)), "cannot open video file (unknown format or corrupt)"
    if not capture.isOpened():
        capture.release()
        raise VideoError(f"{source}: {problem}")
    return capture


def check_output(path: Path, source: str | None = None) -> None:
    """Refuse an existing folder, an output type without a codec, a folder that cannot be written, or
    the input video itself (also through a symlink or hard link), before any work."""
    refuse_folder(path, "the video")
    if path.suffix.lower() not in WRITER_CODECS:
        raise VideoError(f"{path}: unsupported output type; use one of {', '.join(WRITER_CODECS)}")
    if source is not None:
        refuse_input_as_output(source, path)
    check_writable_dir(path.parent, "the video")


def refuse_folder(path: str | Path, what: str) -> None:
    """``OptionError`` when the output ``path`` is an existing folder: found only when the finished
    file is moved into place, it would cost the whole run and name a temporary file."""
    if Path(path).is_dir():
        raise OptionError(f"{path}: is a folder; name a file to write {what} to")


def refuse_input_as_output(source: str, path: str | Path) -> None:
    """``VideoError`` when ``path`` is the file ``source`` names (a path or a ``file:`` URL, through a
    symlink or hard link): writing it would destroy the input."""
    if not os.path.exists(path):
        return
    for candidate in local_paths(source):
        with contextlib.suppress(OSError, ValueError):  # ValueError: a NUL in the name
            if os.path.samefile(candidate, path):
                raise VideoError(f"{path}: is the input video {source}; write the output to another file")


def local_paths(source: str) -> set[str]:
    """The local files ``source`` may name: itself for a path; for a ``file:`` URL both the text after
    ``file:`` (FFmpeg opens it as it is) and the URL's decoded path; none for a camera or stream."""
    if source.isdigit():
        return set()
    if source[:5].lower() == "file:":
        rest = source[5:]
        paths = {rest, urllib.parse.unquote(rest)}
        parts = urllib.parse.urlsplit(source)
        if parts.netloc.lower() in ("", "localhost"):
            paths.add(urllib.parse.unquote(parts.path))
        return {p for p in paths if p}
    return set() if "://" in source else {source}


def open_writer(path: Path, fps: float, size: tuple[int, int], name: Path | None = None) -> cv2.VideoWriter:
    """An OpenCV writer for ``path`` itself; errors name ``name``, the file the user asked for, when
    ``path`` is its temporary stand-in (as in ``process_video``)."""
    check_output(path)
    codec = WRITER_CODECS[path.suffix.lower()]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*codec), fps, size)
    if not writer.isOpened():
        raise VideoError(f"{name or path}: cannot write video with codec {codec} at {fps:g} frames/s")
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


class PrefetchReader:
    """Reads a file on its own thread, up to ``depth`` frames ahead, in order and without dropping.

    OpenCV releases the GIL while it decodes, so decoding the next frames overlaps the detector and
    the model on the current one. Frames ``keep(index)`` rejects are only grabbed (decoded by the
    codec, which needs them for the next ones, but never converted to pixels). The thread owns the
    capture and releases it when it stops.
    """

    def __init__(self, capture: cv2.VideoCapture, keep: Callable[[int], bool], depth: int = 4) -> None:
        self._capture = capture
        self._keep = keep
        self._queue: queue.Queue[tuple[int, np.ndarray] | None] = queue.Queue(depth)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="feredge-prefetch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            index = 0
            while not self._stopping.is_set():
                if self._keep(index):
                    ok, frame = self._capture.read()
                    if not ok:
                        break
                    self._put((index, frame))
                elif not self._capture.grab():
                    break
                index += 1
        except Exception:  # a backend failing mid-file ends the file like a failed read
            log.exception("reading the video file failed")
        finally:
            self._capture.release()
            self._put(None)

    def _put(self, item: tuple[int, np.ndarray] | None) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(queue.Full):
                self._queue.put(item, timeout=0.5)
                return

    def read(self) -> tuple[int, np.ndarray] | None:
        """The next kept frame and its index in the file; ``None`` once the file ended."""
        while True:
            with contextlib.suppress(queue.Empty):
                return self._queue.get(timeout=0.5)  # short waits keep Ctrl-C responsive
            if not self._thread.is_alive() and self._queue.empty():
                return None

    def close(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        self._thread.join(timeout)


def sampler(source_fps: float, sample_fps: float | None) -> Callable[[int], bool]:
    """Which frame indices of a file to process: every one, or the first of each ``1/sample_fps`` slot."""
    if sample_fps is None or sample_fps >= source_fps:
        return lambda index: True
    ratio = sample_fps / source_fps
    return lambda index: index == 0 or math.floor(index * ratio) > math.floor((index - 1) * ratio)


def process_video(
    recognizer: EmotionRecognizer,
    source: str,
    options: VideoOptions | None = None,
    *,
    out: str | Path | None = None,
    show: bool = False,
    on_frame: Callable[[FrameRecord], None] | None = None,
) -> VideoSummary:
    """Run ``recognizer`` over a video until it ends, ``options.max_frames`` or Ctrl-C (a clean stop).

    ``options`` (``VideoOptions``, checked when made, before the source opens; None: the defaults) say how
    often the detector runs, how much scores are smoothed and which frames are processed: with
    ``drop_stale`` (default: on for cameras and stream URLs, off for files) only the newest frame of a
    live source when processing falls behind (``LatestFrameReader``); files are read in full, ahead on
    a thread (``PrefetchReader``).
    ``out`` is written under a temporary name beside it and moved into place when the loop ends,
    Ctrl-C included, so it is either absent or complete and playable; an error leaves no file.
    ``on_frame`` receives each processed frame's record.
    """
    options = VideoOptions() if options is None else options
    summary = VideoSummary(output=Path(out) if out is not None else None)
    if summary.output is not None:
        check_output(summary.output, source)
    capture = open_capture(source)
    live = is_live(source)
    source_fps = frame_rate(capture)
    sample_fps = options.sample_fps
    rate = min(sample_fps, source_fps) if sample_fps is not None else source_fps  # processed frames per second
    tracker = FaceTracker(
        recognizer.labels,
        alpha=options.smoothing,
        max_missed=max(2, round(TRACK_MEMORY_S * rate)),
        min_confidence=recognizer.min_confidence,
    )
    drop_stale = live if options.drop_stale is None else options.drop_stale
    frames = _read_frames(capture, live, drop_stale, source_fps, sample_fps, summary)
    total = None if live else frame_count(capture)
    length = None if total is None else total / source_fps
    if show and not display_available():
        log.warning("no display available (or OpenCV is the headless build): --show ignored")
        show = False
    fps = 0.0
    start = last = time.perf_counter()
    with contextlib.ExitStack() as outputs:  # on leaving: release the writer, then move the file into place
        writer = None
        try:
            first = next(frames, None)
            if first is None:
                raise VideoError(f"{source}: opened, but no frame could be read")
            for index, stamp, frame in itertools.chain([first], frames):
                detected = summary.frames % options.detect_every == 0
                carried = None if detected else [b for b in tracker.next_boxes if _inside(b, frame.shape)]
                result = recognizer.recognize(frame, boxes=carried)
                raw = result.faces
                faces = tracker.update(raw, detected)
                summary.label_counts.update(face.label for face in faces)
                now = time.perf_counter()
                instant = 1.0 / max(now - last, 1e-6)  # whole loop: read, infer, draw, write
                fps, last = (instant if fps == 0.0 else 0.9 * fps + 0.1 * instant), now
                summary.frames += 1
                seconds = now - start if live else stamp
                if on_frame is not None:
                    on_frame(FrameRecord(index, seconds, fps, detected, faces, raw, result.timings, total, length))
                if summary.output is not None or show:
                    annotate(frame, faces, fps)
                if summary.output is not None:
                    if writer is None:
                        partial = outputs.enter_context(atomic_path(summary.output))
                        writer = open_writer(partial, rate, (frame.shape[1], frame.shape[0]), summary.output)
                        outputs.push(partial_checker(partial, summary.output))
                        outputs.callback(writer.release)
                    write_frame(writer, frame)
                if show:
                    cv2.imshow("feredge", frame)
                    if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
                        break
                if options.max_frames is not None and summary.frames >= options.max_frames:
                    break
        except KeyboardInterrupt:
            summary.interrupted = True
        finally:
            summary.seconds = time.perf_counter() - start
            frames.close()
            if show:
                cv2.destroyAllWindows()
    return summary


def write_frame(writer: cv2.VideoWriter, frame: np.ndarray) -> None:
    """``writer.write(frame)`` without OpenCV's warning per failed write ("FFmpeg: Failed to write frame",
    once per frame on a full disk): the writer reports no failure, so ``check_written`` finds it at the end."""
    level = cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    try:
        writer.write(frame)
    finally:
        cv2.utils.logging.setLogLevel(level)


def partial_checker(partial: Path, name: Path) -> Callable[..., None]:
    """An exit callback that runs ``check_written`` on the released ``partial`` when the loop ended
    without an error, so a failed video raises before it is moved into place (an error wins)."""

    def check(exc_type: type[BaseException] | None, *_: object) -> None:
        if exc_type is None:
            check_written(partial, name)

    return check


def check_written(path: Path, name: Path) -> None:
    """``OutputError`` naming ``name`` unless the finished video at ``path`` reads back with frames.

    OpenCV's writer drops a frame it cannot write (a full disk, a quota) without telling its caller,
    and the file it leaves has no index, so the file is opened again to check.
    """
    capture = cv2.VideoCapture(str(path))
    try:
        frames = capture.get(cv2.CAP_PROP_FRAME_COUNT) if capture.isOpened() else 0.0
    finally:
        capture.release()
    if math.isfinite(frames) and frames > 0:
        return
    try:
        full = shutil.disk_usage(path.parent).free < 1 << 20
    except OSError:
        full = False
    why = "no space left on device" if full else "the written file does not read back as a video"
    raise OutputError(f"{name}: cannot write the video: {why}; nothing was kept")


def _read_frames(
    capture: cv2.VideoCapture,
    live: bool,
    drop_stale: bool,
    source_fps: float,
    sample_fps: float | None,
    summary: VideoSummary,
) -> Generator[tuple[int, float, np.ndarray], None, None]:
    """(index in the source, seconds into a file, BGR frame) from the reader that suits the source;
    the reader stops, and the capture is released, when this generator is closed or ends."""
    if not live and not drop_stale:
        prefetch = PrefetchReader(capture, sampler(source_fps, sample_fps))
        try:
            while (item := prefetch.read()) is not None:
                yield item[0], item[0] / source_fps, item[1]
        finally:
            prefetch.close()
        return
    latest = LatestFrameReader(capture) if drop_stale else None
    read = latest.read if latest is not None else capture.read
    interval = 1.0 / sample_fps if sample_fps is not None else 0.0
    index, kept = 0, -math.inf
    try:
        while True:
            ok, frame = read()
            if not ok or frame is None:
                return
            if time.monotonic() - kept >= interval:
                kept = time.monotonic()
                yield index, 0.0, frame
            index += 1
    finally:
        if latest is not None:
            latest.close()
            summary.dropped = latest.dropped
        else:
            capture.release()


def _inside(box: Box, shape: tuple[int, ...]) -> bool:
    """A carried box whose centre is still in the frame (a face moving out is dropped, not cropped empty)."""
    cx, cy = box[0] + box[2] / 2, box[1] + box[3] / 2
    return 0 <= cx < shape[1] and 0 <= cy < shape[0]


def reported_frame_rate(capture: cv2.VideoCapture) -> float | None:
    """The frame rate the stream reports, or None when it reports 0 or nonsense (cameras, some streams)."""
    rate = capture.get(cv2.CAP_PROP_FPS)
    return rate if math.isfinite(rate) and 0 < rate < 1000 else None


def frame_rate(capture: cv2.VideoCapture) -> float:
    """The stream's frame rate for timestamps and the output file: the reported one, else ``FALLBACK_FPS``."""
    return reported_frame_rate(capture) or FALLBACK_FPS


def frame_count(capture: cv2.VideoCapture) -> int | None:
    """The file's frame count, or None when the container does not say (a live source, some WebM)."""
    count = capture.get(cv2.CAP_PROP_FRAME_COUNT)
    return int(count) if math.isfinite(count) and count > 0 else None
