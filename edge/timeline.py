"""Emotion timelines of a video: one row per processed frame and tracked face, as CSV, Parquet,
rows for pandas, and a summary per track.

Columns (``timeline_columns``): ``frame`` (index in the source), ``time_s``, ``track_id``, the box
``x y w h``, ``detected`` (false when the box was carried between detections), ``label`` and
``confidence`` as the annotated video shows them (from the smoothed scores; ``uncertain`` below
``min_confidence``), one column per class with this frame's own score (``happy``, ...), and one
``smoothed_<class>`` column per class.

    from feredge import RecognizerOptions, VideoOptions, analyze_video
    df = analyze_video("clip.mp4", video=VideoOptions(detect_every=5))  # a pandas DataFrame (dicts without pandas)
    df = analyze_video("clip.mp4", RecognizerOptions(detector="haar", threads=1))
    df.groupby("track_id")["label"].value_counts(normalize=True)

CSV rows are written as they come, so a long video costs no memory for them; Parquet (needs
pyarrow), plots and ``analyze_video`` keep the rows in memory.
"""

from __future__ import annotations

import csv
import importlib.util
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from feredge.edge.atomic import atomic_path
from feredge.edge.errors import OptionError
from feredge.edge.options import RecognizerOptions, VideoOptions
from feredge.edge.outputs import check_writable_dir, naming_write_errors
from feredge.edge.progress import FrameProgress
from feredge.edge.video import (
    FrameRecord,
    VideoSummary,
    check_output,
    process_video,
    refuse_folder,
    refuse_input_as_output,
)

if TYPE_CHECKING:
    import pandas

    from feredge.edge.recognizer import EmotionRecognizer

TIMELINE_SUFFIXES = (".csv", ".parquet")
PLOT_SUFFIXES = (".png",)


def timeline_columns(labels: Sequence[str]) -> list[str]:
    """The timeline's columns, in order, for a model with ``labels``."""
    return [
        *("frame", "time_s", "track_id", "x", "y", "w", "h", "detected", "label", "confidence"),
        *labels,
        *(f"smoothed_{label}" for label in labels),
    ]


def frame_rows(record: FrameRecord, labels: Sequence[str]) -> list[dict[str, Any]]:
    """The timeline rows of one processed frame: one per tracked face."""
    rows = []
    for face, raw in zip(record.faces, record.raw, strict=True):
        x, y, w, h = face.box
        row: dict[str, Any] = {
            "frame": record.index,
            "time_s": round(record.time, 3),
            "track_id": face.track_id,
            "x": x,
            "y": y,
            "w": w,
            "h": h,
            "detected": record.detected,
            "label": face.label,
            "confidence": face.confidence,
        }
        row.update((label, raw.scores[label]) for label in labels)
        row.update((f"smoothed_{label}", face.scores[label]) for label in labels)
        rows.append(row)
    return rows


def check_timeline_path(path: str | Path, source: str | None = None) -> Path:
    """Refuse, before any work, an existing folder, a timeline type feredge cannot write, Parquet
    without pyarrow, an unwritable folder or the input video itself."""
    path = Path(path)
    refuse_folder(path, "the timeline")
    suffix = path.suffix.lower()
    if suffix not in TIMELINE_SUFFIXES:
        raise OptionError(f"{path}: unsupported timeline type; use one of {', '.join(TIMELINE_SUFFIXES)}")
    if suffix == ".parquet" and importlib.util.find_spec("pyarrow") is None:
        raise OptionError(f"{path}: writing Parquet needs pyarrow (pip install 'feredge[analytics]'); or use .csv")
    if source is not None:
        refuse_input_as_output(source, path)
    check_writable_dir(path.parent, "the timeline")
    return path


def check_plot_path(path: str | Path, source: str | None = None) -> Path:
    """Refuse, before any work, an existing folder, a plot type other than PNG, a missing matplotlib,
    an unwritable folder or the input video itself."""
    path = Path(path)
    refuse_folder(path, "the plot")
    if path.suffix.lower() not in PLOT_SUFFIXES:
        raise OptionError(f"{path}: the timeline plot is written as PNG; name it *.png")
    if importlib.util.find_spec("matplotlib") is None:
        raise OptionError(f"{path}: drawing the timeline plot needs matplotlib (pip install 'feredge[analytics]')")
    if source is not None:
        refuse_input_as_output(source, path)
    check_writable_dir(path.parent, "the plot")
    return path


@dataclass
class TrackSummary:
    """One track over the whole video: how long it was seen and its share of time per label."""

    track_id: int
    frames: int
    start_s: float
    end_s: float
    duration_s: float
    shares: dict[str, float]  # label -> share of the track's frames, largest first
    dominant: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "track_id": self.track_id,
            "frames": self.frames,
            "start_s": self.start_s,
            "end_s": self.end_s,
            "duration_s": self.duration_s,
            "dominant": self.dominant,
            "shares": self.shares,
        }

    def describe(self) -> str:
        shares = " · ".join(f"{label} {share:.0%}" for label, share in self.shares.items() if share >= 0.005)
        return (
            f"track {self.track_id}: {self.dominant} ({self.duration_s:.1f} s, {self.frames} frames, "
            f"{self.start_s:.1f}-{self.end_s:.1f} s) · {shares}"
        )


@dataclass
class _TrackStats:
    frames: int = 0
    start_s: float = 0.0
    end_s: float = 0.0
    labels: Counter[str] = field(default_factory=Counter)


class TimelineRecorder:
    """``on_frame`` for ``process_video`` that turns frame records into timeline rows.

    Used as a context manager it writes ``path`` when the run ends: CSV row by row into a temporary
    file moved into place at the end (also after Ctrl-C, with the frames processed until then),
    Parquet at the end; an error leaves no file. ``keep_rows`` keeps the rows in ``rows`` (always for
    Parquet). The per-track summary is counted as it goes, so it needs no rows.
    """

    def __init__(self, labels: Sequence[str], path: str | Path | None = None, keep_rows: bool = True) -> None:
        self.labels = tuple(labels)
        self.columns = timeline_columns(self.labels)
        self.path = Path(path) if path is not None else None
        self.parquet = self.path is not None and self.path.suffix.lower() == ".parquet"
        self.keep_rows = keep_rows or self.parquet
        self.rows: list[dict[str, Any]] = []
        self._tracks: dict[int, _TrackStats] = {}
        self._frames = 0
        self._first_s = self._last_s = 0.0
        self._length: float | None = None
        self._stack = ExitStack()
        self._tmp: Path | None = None
        self._csv: Any = None

    def __enter__(self) -> TimelineRecorder:
        if self.path is not None:
            self._tmp = self._stack.enter_context(atomic_path(self.path))
            if not self.parquet:
                handle = self._stack.enter_context(open(self._tmp, "w", newline="", encoding="utf-8"))
                self._csv = csv.DictWriter(handle, self.columns)
                self._csv.writeheader()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if self.path is None:
            return  # nothing was opened
        with naming_write_errors(self.path, "the timeline"):  # a full disk shows at the last flush
            try:
                if exc_type is None and self.parquet and self._tmp is not None:
                    write_parquet(self.rows, self.columns, self._tmp)
            finally:
                self._stack.__exit__(exc_type, exc, traceback)

    def __call__(self, record: FrameRecord) -> None:
        if not self._frames:
            self._first_s = record.time
        self._frames += 1
        self._last_s = record.time
        self._length = record.length
        rows = frame_rows(record, self.labels)
        for row in rows:
            stats = self._tracks.setdefault(row["track_id"], _TrackStats(start_s=row["time_s"]))
            stats.frames += 1
            stats.end_s = row["time_s"]
            stats.labels[row["label"]] += 1
        if self._csv is not None and self.path is not None:  # a CSV is written only to a path
            with naming_write_errors(self.path, "the timeline"):
                self._csv.writerows(rows)
        if self.keep_rows:
            self.rows.extend(rows)

    @property
    def frame_interval(self) -> float:
        """Mean seconds between processed frames (0 for fewer than two)."""
        return (self._last_s - self._first_s) / (self._frames - 1) if self._frames > 1 else 0.0

    def summary(self) -> list[TrackSummary]:
        """Each track's duration, share of time per label and dominant label, longest first.

        A track lasts from its first frame to one processing step past its last, but never past the
        file's end: with ``sample_fps`` the step can be longer than what is left of the video."""
        step = self.frame_interval
        tracks = []
        for track_id, stats in self._tracks.items():
            shares = {label: count / stats.frames for label, count in stats.labels.most_common()}
            end = stats.end_s + step
            if self._length is not None:
                end = min(end, max(self._length, stats.end_s))
            duration = round(end - stats.start_s, 3)
            dominant = next(iter(shares))
            tracks.append(TrackSummary(track_id, stats.frames, stats.start_s, stats.end_s, duration, shares, dominant))
        return sorted(tracks, key=lambda t: (-t.frames, t.track_id))


def write_parquet(rows: list[dict[str, Any]], columns: Sequence[str], path: Path) -> None:
    """Rows as a Parquet file (pyarrow, imported here: it is optional and large)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pydict({column: [row[column] for row in rows] for column in columns})
    pq.write_table(table, path)


def as_table(rows: list[dict[str, Any]], columns: Sequence[str]) -> pandas.DataFrame | list[dict[str, Any]]:
    """A pandas DataFrame with ``columns`` in order when pandas is installed, else ``rows`` as they are."""
    if importlib.util.find_spec("pandas") is None:
        return rows
    import pandas

    return pandas.DataFrame(rows, columns=list(columns))


def analyze_video(
    source: str | Path,
    recognizer: EmotionRecognizer | RecognizerOptions | None = None,
    video: VideoOptions | None = None,
    *,
    out: str | Path | None = None,
    timeline: str | Path | None = None,
    plot: str | Path | None = None,
    progress: bool = False,
) -> pandas.DataFrame | list[dict[str, Any]]:
    """The emotion timeline of a video file, camera or stream: one row per processed frame and
    tracked face (columns: ``timeline_columns``), as a pandas DataFrame when pandas is installed and
    a list of dicts otherwise; the options are those of ``feredge video``.

    ``recognizer`` is used as given; ``RecognizerOptions`` (None: the defaults) build one, which is
    closed at the end. ``video`` (``VideoOptions``; None: the defaults) says how the video is run.
    ``out`` writes the annotated video, ``timeline`` the rows (``.csv`` or ``.parquet``), ``plot`` the
    timeline plot (PNG, needs matplotlib), ``progress`` a progress bar on stderr. Ctrl-C still finishes
    the files (with the frames processed until then) and then raises ``KeyboardInterrupt``: a truncated
    table is never returned as if it were the whole video.
    """
    source = str(source)
    if out is not None:
        check_output(Path(out), source)
    if timeline is not None:
        check_timeline_path(timeline, source)
    if plot is not None:
        check_plot_path(plot, source)
    with ExitStack() as stack:
        if recognizer is None or isinstance(recognizer, RecognizerOptions):
            from feredge.edge.recognizer import EmotionRecognizer

            options = RecognizerOptions() if recognizer is None else recognizer
            recognizer = stack.enter_context(EmotionRecognizer.create_from_options(options))
        bar = FrameProgress() if progress else None
        if bar is not None:
            stack.callback(bar.close)
        recorder, summary = record_timeline(recognizer, source, video, timeline=timeline, on_frame=bar, out=out)
    if plot is not None:
        from feredge.plots import plot_timeline

        plot_timeline(recorder.rows, plot)
    if summary.interrupted:
        raise KeyboardInterrupt
    return as_table(recorder.rows, recorder.columns)


def record_timeline(
    recognizer: EmotionRecognizer,
    source: str,
    video: VideoOptions | None = None,
    *,
    timeline: str | Path | None = None,
    keep_rows: bool = True,
    on_frame: Callable[[FrameRecord], None] | None = None,
    out: str | Path | None = None,
    show: bool = False,
) -> tuple[TimelineRecorder, VideoSummary]:
    """``process_video`` (with ``video``, ``out`` and ``show``) into a ``TimelineRecorder`` that writes
    ``timeline`` (if given): the one wiring of ``feredge video``, ``analyze_video`` and the demo's clips,
    which also need the recorder's track summary and the run's summary. ``on_frame`` sees each record
    after the recorder (a progress bar, say)."""
    with TimelineRecorder(recognizer.labels, timeline, keep_rows=keep_rows) as recorder:

        def record(frame: FrameRecord) -> None:
            recorder(frame)
            if on_frame is not None:
                on_frame(frame)

        summary = process_video(recognizer, source, video, out=out, show=show, on_frame=record)
    return recorder, summary
