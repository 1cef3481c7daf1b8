"""Options written once: what a recognizer and a video run are made of, with their defaults and checks.

``RecognizerOptions`` and ``VideoOptions`` play the part ``TrainConfig`` + ``LIMITS`` play for training:
every caller (``feredge predict`` and ``video``, ``analyze_video``, the demo, the benchmarks) builds one,
so a default or a range lives here and nowhere else. They check their values when made, before any model
or source is opened, and raise ``OptionError`` in the project's words.

    options = RecognizerOptions(detector="haar", threads=2, min_confidence=0.4)
    recognizer = EmotionRecognizer.create_from_options(options)
    analyze_video("clip.mp4", options, VideoOptions(detect_every=5))
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from feredge.edge.cpu import check_threads
from feredge.edge.detectors import (
    DEFAULT_DETECTOR,
    DEFAULT_MAX_SIDE,
    DEFAULT_MIN_FACE,
    DETECTOR_DEFAULT,
    DETECTORS,
    Detector,
    DetectSize,
    check_detect_size,
    check_score_threshold,
)
from feredge.edge.errors import OptionError
from feredge.edge.metadata import is_integer, is_real
from feredge.edge.model import EmotionModel, check_prior_tau


def described(value: object) -> str:
    """A wrong argument for a message: its repr, cut short, and its type, which is often the problem."""
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape}"
    return f"{value!r:.80} ({type(value).__name__})"


@dataclass(frozen=True)
class RecognizerOptions:
    """What ``EmotionRecognizer`` is made of (``EmotionRecognizer.create_from_options``).

    ``model``: a model path, an ``EmotionModel`` or None for the shipped default; ``detector``: a name from
    ``DETECTORS`` or an object with ``detect(image) -> boxes``; ``detector_model``: another model file for
    a detector that runs one; ``threads``: interpreter threads (None: ``default_threads()``, or a given
    model's own); ``labels`` and ``normalization`` label and scale a model without metadata; ``min_face``:
    the smallest face side in pixels (None: the detector's own); ``max_side``: the largest side detection
    ever runs at; ``detect_size``: the long side of the copy detection runs on (``DETECTOR_DEFAULT``: the
    detector's own; None: the frame up to ``max_side``); ``min_confidence``: below it a face is labelled
    ``uncertain``; ``prior_tau``: the multiple of the log training class prior removed from the scores
    (None: the model's own); ``detector_score``: the score a face needs from a detector that scores
    (YuNet, BlazeFace; None: the detector's own). See ``EmotionRecognizer`` for what each does.
    """

    model: str | Path | EmotionModel | None = None
    detector: str | Detector = DEFAULT_DETECTOR
    threads: int | None = None
    labels: str | tuple[str, ...] | None = None
    normalization: str | None = None
    detector_model: str | Path | None = None
    min_face: int | None = DEFAULT_MIN_FACE
    max_side: int = DEFAULT_MAX_SIDE
    min_confidence: float = 0.0
    prior_tau: float | None = None
    detect_size: DetectSize = DETECTOR_DEFAULT
    detector_score: float | None = None

    def __post_init__(self) -> None:
        model = self.model
        if not (model is None or isinstance(model, str | os.PathLike | EmotionModel)) or model == "":
            raise OptionError(
                "model must be a model file path (str or pathlib.Path), an EmotionModel or None for the default "
                f"model, got {described(model)}"
            )
        if not isinstance(self.detector, str) and not callable(getattr(self.detector, "detect", None)):
            raise OptionError(
                f"detector must be a detector name ({', '.join(DETECTORS)}) or an object with a detect(image) "
                f"method, got {described(self.detector)}"
            )
        if self.normalization is not None and not isinstance(self.normalization, str):
            raise OptionError(f"normalization must be a name (str) or None, got {described(self.normalization)}")
        if self.detector_model is not None and not isinstance(self.detector_model, str | os.PathLike):
            raise OptionError(f"detector_model must be a file path or None, got {described(self.detector_model)}")
        if not is_real(self.min_confidence) or not 0.0 <= self.min_confidence <= 1.0:
            raise OptionError(
                f"min_confidence must be between 0 and 1 (a number), got {described(self.min_confidence)}"
            )
        if self.prior_tau is not None:
            check_prior_tau(self.prior_tau)
        checked: dict[str, Any] = {
            "threads": None if self.threads is None else check_threads(self.threads),
            "min_face": _checked_int("min_face", self.min_face, 0, optional=True),
            "max_side": _checked_int("max_side", self.max_side, 1),
            "labels": _checked_labels(self.labels),
            "min_confidence": float(self.min_confidence),
        }
        if self.detect_size != DETECTOR_DEFAULT:
            checked["detect_size"] = check_detect_size(self.detect_size)
        if self.detector_score is not None:
            checked["detector_score"] = check_score_threshold(self.detector_score)
        for name, value in checked.items():  # plain values: LiteRT refuses numpy ints, a generator is read once
            object.__setattr__(self, name, value)

    def as_kwargs(self) -> dict[str, Any]:
        """The options as ``EmotionRecognizer``'s keyword arguments."""
        return {option.name: getattr(self, option.name) for option in fields(self)}


@dataclass(frozen=True)
class VideoOptions:
    """How a video is run (``process_video``, ``analyze_video``, ``feredge video``, the demo's clips).

    ``detect_every``: the detector runs every N processed frames and the tracker carries the boxes in
    between; ``smoothing``: the weight of the newest frame in each face's score average, in (0, 1] (1: no
    smoothing); ``sample_fps``: at most that many frames per second of video are processed (None: all);
    ``max_frames``: stop after that many processed frames; ``drop_stale``: process only a live source's
    newest frame when falling behind (None: on for cameras and streams, off for files).
    """

    detect_every: int = 3
    smoothing: float = 0.4
    sample_fps: float | None = None
    max_frames: int | None = None
    drop_stale: bool | None = field(default=None)

    def __post_init__(self) -> None:
        from feredge.edge.track import check_smoothing

        object.__setattr__(self, "detect_every", _checked_int("detect_every", self.detect_every, 1))
        object.__setattr__(self, "max_frames", _checked_int("max_frames", self.max_frames, 1, optional=True))
        if self.sample_fps is not None and not (is_real(self.sample_fps) and math.isfinite(self.sample_fps)):
            raise OptionError(f"sample_fps must be > 0, got {described(self.sample_fps)}")
        if self.sample_fps is not None and self.sample_fps <= 0:
            raise OptionError(f"sample_fps must be > 0, got {self.sample_fps}")
        check_smoothing(self.smoothing)


def _checked_int(name: str, value: object, low: int, optional: bool = False) -> int | None:
    """``value`` as a plain int (LiteRT refuses numpy's), or None when ``optional``; else ``OptionError``."""
    if value is None and optional:
        return None
    if is_integer(value) and value >= low:  # type: ignore[operator]
        return int(value)  # type: ignore[call-overload]
    none = " or None" if optional else ""
    raise OptionError(f"{name} must be >= {low} (an int{none}), got {described(value)}")


def _checked_labels(labels: object) -> str | tuple[str, ...] | None:
    """``labels`` as ``load_model`` takes it: None, a preset or comma list, or the names as a tuple (a
    generator is read once, here)."""
    if labels is None or isinstance(labels, str):
        return labels
    if isinstance(labels, Iterable) and not isinstance(labels, bytes | bytearray):
        names = tuple(labels)
        if all(isinstance(name, str) for name in names):
            return names
    raise OptionError(
        f"labels must be a preset name (e.g. 'fer2013'), a comma-separated string or a list of names, "
        f"got {described(labels)}"
    )
