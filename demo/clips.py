"""An uploaded clip in; the annotated video, the emotion timeline (CSV) and its plot out: the Video tab's work.

A clip runs through the same pipeline as ``feredge video --out --timeline --plot`` on a recognizer
borrowed from the service's cache (``DemoService.recognizer``), held for the whole clip. A clip
therefore occupies one of the service's workers while it runs, so its length and size are capped and
checked before any work, each with a message that says what to do instead.
"""

from __future__ import annotations

import importlib.util
import math
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2

from feredge.demo.service import DemoService
from feredge.edge.errors import VideoError
from feredge.edge.options import VideoOptions
from feredge.edge.timeline import record_timeline
from feredge.edge.video import frame_count, frame_rate, open_capture, reported_frame_rate

MAX_CLIP_SECONDS = 20.0
# The annotated video is written as WebM (VP8): the one type OpenCV's pip wheels write that browsers play.
OUTPUT_SUFFIX = ".webm"
# Each clip's outputs live in their own folder under WORK_ROOT; Gradio copies them into its cache when
# the answer is sent, so folders older than this are deleted at the next clip.
KEEP_OUTPUTS_S = 3600.0
WORK_ROOT = Path(tempfile.gettempdir()) / "feredge-demo-video"
IDLE_MESSAGE = (
    f"Upload a clip of up to {MAX_CLIP_SECONDS:g} s: you get the annotated video, "
    "each face's emotions over time and the timeline as CSV."
)


class ClipError(VideoError):
    """An uploaded clip the Video tab refuses: too large, too long or not a readable video."""


@dataclass(frozen=True)
class ClipInfo:
    """What the container says about a clip: ``frames`` is None when it does not say (some WebM),
    ``fps`` is ``edge.video.frame_rate``'s, the rate its timeline is stamped with, and ``rate_reported``
    whether the container gave it (a guessed rate must not refuse a clip as too long)."""

    frames: int | None
    fps: float
    width: int
    height: int
    rate_reported: bool = True

    @property
    def seconds(self) -> float | None:
        """The length, when the container gives both its frame count and its frame rate."""
        return self.frames / self.fps if self.frames is not None and self.rate_reported else None


@dataclass(frozen=True)
class ClipResult:
    """The outputs of one clip, and the Markdown that sums it up."""

    video: Path
    timeline: Path
    plot: Path | None
    status: str


def human_size(size: int) -> str:
    """``850 KB`` or ``12.5 MB``."""
    return f"{size / 2**10:.0f} KB" if size < 2**20 else f"{size / 2**20:.3g} MB"


def check_clip(path: Path, name: str, max_bytes: int, max_seconds: float = MAX_CLIP_SECONDS) -> ClipInfo:
    """Refuse a clip larger than ``max_bytes``, longer than ``max_seconds`` or that OpenCV cannot
    decode, before any work; errors name the clip as the user uploaded it."""
    size = path.stat().st_size
    if size > max_bytes:
        raise ClipError(f"{name}: {human_size(size)}, larger than the {human_size(max_bytes)} limit for a clip")
    unreadable = ClipError(f"{name}: not a video this demo can read (try an .mp4, .webm or .avi file)")
    try:
        capture = open_capture(str(path.absolute()))  # absolute: a file, never a camera index or a URL
    except VideoError as exc:
        raise unreadable from exc
    try:
        if not capture.read()[0]:
            raise unreadable
        info = ClipInfo(
            frames=frame_count(capture),
            fps=frame_rate(capture),
            width=int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
            height=int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
            rate_reported=reported_frame_rate(capture) is not None,
        )
    finally:
        capture.release()
    if info.seconds is not None and info.seconds > max_seconds + 0.5 / max(info.fps, 1.0):
        raise ClipError(
            f"{name}: {info.seconds:.1f} s long; the demo takes clips up to {max_seconds:g} s "
            "(cut it, or run `feredge video CLIP --timeline out.csv` for a whole video)"
        )
    return info


def analyze_clip(
    service: DemoService,
    path: Path,
    name: str,
    model: str | None = None,
    detector: str | None = None,
    threads: int | None = None,
    detect_every: int = VideoOptions.detect_every,
    on_progress: Callable[[int, int | None], None] | None = None,
) -> ClipResult:
    """The annotated video, the timeline (CSV) and its plot (PNG, when matplotlib is installed) of an
    uploaded clip, written into a fresh folder; ``on_progress(done, total)`` follows the frames.

    Raises ``ClipError`` for a refused clip and ``DemoRequestError`` for a bad model, detector or
    thread count."""
    info = check_clip(path, name, service.max_upload_bytes)
    # A clip whose container gives no length is cut at the cap instead.
    max_frames = math.ceil(MAX_CLIP_SECONDS * info.fps)
    folder = _fresh_folder()
    stem = Path(name).stem or "clip"
    video, timeline = folder / f"{stem}_annotated{OUTPUT_SUFFIX}", folder / f"{stem}_timeline.csv"

    with service.recognizer(model, detector, threads) as recognizer:
        recorder, summary = record_timeline(
            recognizer,
            str(path.absolute()),
            VideoOptions(detect_every=detect_every, max_frames=max_frames),
            timeline=timeline,
            on_frame=None if on_progress is None else lambda record: on_progress(record.index + 1, record.total),
            out=video,
        )
        used = f"model `{model or service.default_model}`, detector `{recognizer.detector_name}`"
    plot = None
    if importlib.util.find_spec("matplotlib") is not None:
        from feredge.plots import plot_timeline

        plot = plot_timeline(recorder.rows, folder / f"{stem}_timeline.png", title=f"{name}: emotions per tracked face")
    tracks = recorder.summary()
    head = (
        f"**{len(tracks)} face{'s' if len(tracks) != 1 else ''} tracked** in {summary.frames} frames"
        if tracks
        else f"**No face found** in {summary.frames} frames"
    )
    every = f"every {detect_every} frames" if detect_every > 1 else "on every frame"
    lines = [
        f"{head} ({summary.mean_fps:.1f} frames/s, detector {every}; {used})",
        *(f"- {track.describe()}" for track in tracks[:6]),
    ]
    if info.seconds is None and summary.frames >= max_frames:
        lines.append(f"\nOnly the first {MAX_CLIP_SECONDS:g} s were analysed.")
    if plot is None:
        lines.append("\nThe timeline plot needs matplotlib (`pip install 'feredge[demo]'`).")
    return ClipResult(video, timeline, plot, "\n".join(lines))


def _fresh_folder() -> Path:
    """A new folder for one clip's outputs; folders of clips older than ``KEEP_OUTPUTS_S`` go."""
    WORK_ROOT.mkdir(parents=True, exist_ok=True)
    cutoff = time.time() - KEEP_OUTPUTS_S
    for old in WORK_ROOT.iterdir():
        try:
            if old.is_dir() and old.stat().st_mtime < cutoff:
                shutil.rmtree(old, ignore_errors=True)
        except OSError:
            continue  # another process removed it first
    return Path(tempfile.mkdtemp(prefix="clip-", dir=WORK_ROOT))
