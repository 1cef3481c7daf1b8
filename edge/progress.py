"""A one-line progress bar with ETA for long runs on a terminal, without a dependency for it."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from feredge.edge.video import FrameRecord


def format_seconds(seconds: float) -> str:
    """``1:05`` or ``1:02:05``."""
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class ProgressBar:
    """``42% [#####·····] 105/250 frames · 31.4 FPS · ETA 0:05 · note`` redrawn in place on ``stream``.

    The ETA comes from the items done per second so far. Redraws are limited to a few per second,
    because writing to a terminal on every frame costs more than a small model's inference.
    """

    def __init__(self, total: int, unit: str = "frames", stream: TextIO | None = None, width: int = 24) -> None:
        self.total = max(1, total)
        self.unit = unit
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self._start = time.monotonic()
        self._drawn = 0.0

    def update(self, done: int, fps: float | None = None, note: str = "", force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._drawn < 0.25:
            return
        self._drawn = now
        done = min(done, self.total)
        share = done / self.total
        filled = round(share * self.width)
        elapsed = now - self._start
        eta = (self.total - done) * elapsed / done if done else None
        parts = [f"{share:4.0%} [{'#' * filled}{'·' * (self.width - filled)}] {done}/{self.total} {self.unit}"]
        if fps is not None:
            parts.append(f"{fps:.1f} FPS")
        parts.append(f"ETA {format_seconds(eta)}" if eta is not None else "ETA -")
        if note:
            parts.append(note)
        print("\r" + " · ".join(parts)[:110].ljust(110), end="", file=self.stream, flush=True)

    def close(self) -> None:
        print(file=self.stream, flush=True)


class FrameProgress:
    """A ``ProgressBar`` over a video file's frames, for ``on_frame`` callbacks.

    The bar starts with the first record that knows the file's frame count; a camera or stream has
    none, so it never draws. ``labels`` adds each frame's face labels as the note.
    """

    def __init__(self, labels: bool = False) -> None:
        self.labels = labels
        self.bar: ProgressBar | None = None

    def __call__(self, record: FrameRecord) -> None:
        if record.total is None:
            return
        self.bar = self.bar or ProgressBar(record.total)
        note = ", ".join(face.label for face in record.faces) if self.labels else ""
        self.bar.update(record.index + 1, record.fps, note)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
