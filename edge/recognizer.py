"""``EmotionRecognizer``: images in, faces with emotion labels out.

    from feredge.edge.recognizer import EmotionRecognizer
    recognizer = EmotionRecognizer("model_int8.tflite", detector="haar", threads=2)
    for face in recognizer.predict("group.jpg"):
        print(face.box, face.label, face.confidence)
    result = recognizer.recognize("group.jpg")  # the faces with what this call measured
    result.faces, result.image_size, result.timings.as_dict()
    recognizer.detect_emotions(frame)     # fer-compatible: [{"box": [...], "emotions": {...}}]

Every face of a call goes through one batched model invocation. A call's timings come with its
result (``Prediction``), never from the recognizer, which a pool lends to many callers.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, TypeAlias

import numpy as np

from feredge.edge.decode import ScaledImage, decode_image_scaled
from feredge.edge.detectors import (
    DEFAULT_DETECTOR,
    Box,
    Detection,
    Detector,
    detect_faces,
    detector_name,
    make_detector,
)
from feredge.edge.errors import FeredgeError, ImageError, OptionError
from feredge.edge.metadata import is_integer, is_real
from feredge.edge.model import EmotionModel, default_threads, load_model
from feredge.edge.options import RecognizerOptions, described
from feredge.edge.preprocess import crop_face

ImageInput: TypeAlias = str | Path | bytes | bytearray | np.ndarray | ScaledImage

# The label of a face whose best score is below the recognizer's ``min_confidence``.
UNCERTAIN = "uncertain"


class RecognizerClosedError(FeredgeError, RuntimeError):
    """``predict`` was called on an ``EmotionRecognizer`` after ``close()`` (or its ``with`` block)."""


@dataclass(frozen=True)
class Face:
    """One detected face: its box (x, y, w, h) in the original image's pixels and the model's scores.

    ``label`` is the best-scoring class, or ``"uncertain"`` when ``confidence`` (the best score) is
    below the recognizer's ``min_confidence``; ``scores`` always holds every class.

    ``detector_score`` and ``landmarks`` ((x, y) points in original pixels, in the detector's order: see
    ``feredge.edge.detectors.Detection``) are the detector's, for a face it found: YuNet and BlazeFace give
    both, Haar no landmarks and a score of 1 for every face; faces from given boxes or from a detector with
    only ``detect(image)`` have neither.
    """

    box: Box
    label: str
    confidence: float
    scores: dict[str, float]
    track_id: int | None = None
    detector_score: float | None = None
    landmarks: tuple[tuple[float, float], ...] | None = None

    def to_fer(self) -> dict[str, Any]:
        """The record ``fer.FER.detect_emotions`` returns for a face."""
        return {"box": list(self.box), "emotions": dict(self.scores)}

    def top(self, k: int = 1) -> list[tuple[str, float]]:
        """The ``k`` best (label, score) pairs, best first."""
        return sorted(self.scores.items(), key=lambda item: item[1], reverse=True)[:k]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record (``track_id``, ``detector_score`` and ``landmarks`` only when known)."""
        data = {"box": list(self.box), "label": self.label, "confidence": self.confidence}
        data["scores"] = self.scores
        if self.track_id is not None:
            data["track_id"] = self.track_id
        if self.detector_score is not None:
            data["detector_score"] = self.detector_score
        if self.landmarks is not None:
            data["landmarks"] = [list(point) for point in self.landmarks]
        return data


def face_from_scores(
    box: Box,
    labels: Sequence[str],
    probs: np.ndarray,
    track_id: int | None = None,
    min_confidence: float = 0.0,
    detection: Detection | None = None,
    scale: tuple[float, float] = (1.0, 1.0),
) -> Face:
    """A ``Face`` labelled with the highest of ``probs`` (one row, ordered like ``labels``), or
    ``UNCERTAIN`` when that score is below ``min_confidence``; ``detection`` (found in an image ``scale``
    times smaller than the original, per axis) gives its detector score and landmarks."""
    best = int(np.argmax(probs))
    scores = {label: round(float(p), 6) for label, p in zip(labels, probs, strict=True)}
    confidence = scores[labels[best]]
    label = labels[best] if confidence >= min_confidence else UNCERTAIN
    score, points = None, None
    if detection is not None:
        score = round(float(detection.score), 4)
        if detection.landmarks is not None:
            points = tuple(
                (round(float(x) * scale[0], 1), round(float(y) * scale[1], 1)) for x, y in detection.landmarks
            )
    return Face(tuple(int(v) for v in box), label, confidence, scores, track_id, score, points)


def reading_order(detections: Sequence[Detection]) -> list[Detection]:
    """Faces top to bottom, then left to right, as a page is read.

    Sorted by their top edge, faces form rows: a face is on the row of the row's first (topmost) face when
    their heights overlap by at least half the smaller one, and each row is read left to right. Faces side
    by side whose tops differ by a few pixels are thus read left to right, not by those pixels.
    """
    rows: list[tuple[Box, list[Detection]]] = []  # (the row's first face's box, the row's faces)
    for detection in sorted(detections, key=lambda d: (d.box[1], d.box[0])):
        _, top, _, height = detection.box
        if rows:
            _, row_top, _, row_height = rows[-1][0]
            if min(top + height, row_top + row_height) - top >= min(height, row_height) / 2:
                rows[-1][1].append(detection)
                continue
        rows.append((detection.box, [detection]))
    return [detection for _, row in rows for detection in sorted(row, key=lambda d: d.box[0])]


@dataclass(frozen=True)
class StageTimings:
    """Milliseconds spent per stage by one call (summed over its images). A caller that decoded the
    image itself gives its own decode time with ``dataclasses.replace``."""

    decode_ms: float = 0.0
    detect_ms: float = 0.0
    preprocess_ms: float = 0.0
    infer_ms: float = 0.0
    faces: int = 0

    @property
    def total_ms(self) -> float:
        return self.decode_ms + self.detect_ms + self.preprocess_ms + self.infer_ms

    def as_dict(self) -> dict[str, float]:
        return {**asdict(self), "total_ms": self.total_ms}

    def rounded(self) -> dict[str, float]:
        """``as_dict`` to the microsecond: the one rounding of every JSON record (predict, REST, video)."""
        return {key: round(value, 3) for key, value in self.as_dict().items()}


@dataclass(frozen=True)
class Prediction:
    """One ``recognize`` call's answer: the faces (in reading order), the decoded image they were found
    in (``image.original_size`` is the size their boxes refer to; see ``decode_image_scaled``) and what
    the call measured."""

    faces: list[Face]
    image: ScaledImage
    timings: StageTimings

    @property
    def image_size(self) -> tuple[int, int]:
        """(width, height) of the original image, in whose pixels the boxes are."""
        return self.image.original_size

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record shared by ``feredge predict --json`` and the demo's REST ``/predict``:
        ``image_size`` is ``[width, height]``, ``timings`` milliseconds to the microsecond."""
        width, height = self.image_size
        faces = [face.to_dict() for face in self.faces]
        return {"image_size": [width, height], "faces": faces, "timings": self.timings.rounded()}


@dataclass
class _Clock:
    stages: dict[str, float] = field(default_factory=dict)
    _last: float = field(default_factory=time.perf_counter)

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        attr = f"{stage}_ms"
        self.stages[attr] = self.stages.get(attr, 0.0) + (now - self._last) * 1000.0
        self._last = now

    def timings(self, faces: int) -> StageTimings:
        return StageTimings(**self.stages, faces=faces)


class EmotionRecognizer:
    """Detector + emotion model.

    ``model`` is a model path, an ``EmotionModel`` or ``None`` for the shipped default model;
    ``detector`` is a name from ``feredge.edge.detectors.DETECTORS`` (``none``: the input already is a
    face crop) or any object with ``detect(image) -> boxes``. Faces smaller than ``min_face`` pixels
    are ignored. Detection runs on a copy whose long side is ``detect_size`` pixels (never enlarged; the
    detector's own default unless given, chosen by the rule in docs/deploy.md; ``None``: the frame as
    it is) and at most ``max_side``; boxes and landmarks are in the frame's pixels.

    Faces come in reading order (``reading_order``: top to bottom, then left to right); faces of given
    ``boxes`` keep the boxes' order.

    Encoded images above ``REDUCED_DECODE_SIDE`` (4096 px) are decoded at 1/2, 1/4 or 1/8 scale
    (``decode_image_scaled``); detection and cropping run on that image (``min_face`` counts its
    pixels) and boxes are reported in the original image's pixels.

    ``min_confidence`` (0 to 1, default 0: off) labels a face ``"uncertain"`` when its best score is
    below it: a low top score on a 7-class model often means a face between two expressions, and
    callers that act on the label should not take it at face value. Its scores are kept.

    ``prior_tau`` (0 to 3; ``None``: the model's own, from its metadata) removes that multiple of the
    log training class prior from the scores before the temperature (logit adjustment): 1 suits photos
    whose expressions are not distributed like the training faces, 0 gives the network's raw scores. A
    model without a ``class_prior`` in its metadata, or with a class its training never saw, takes only 0.

    ``with EmotionRecognizer() as recognizer:`` frees the interpreter and detector when the block
    ends (``close()``), rather than whenever the garbage collector gets to them.

    The settings are ``RecognizerOptions``'s fields, given by keyword here or as one object to
    ``create_from_options`` (which is what the CLI, ``analyze_video``, the demo and the benchmarks do);
    ``recognizer.options`` keeps them. Arguments of the wrong type or out of range raise ``OptionError``
    there, before any model is loaded: ``threads`` (1 to ``MAX_THREADS``), ``min_face``, ``max_side`` and
    ``detect_size`` are ints (not bools), ``min_confidence`` and ``prior_tau`` numbers.
    """

    def __init__(
        self,
        model: str | Path | EmotionModel | None = None,
        detector: str | Detector = DEFAULT_DETECTOR,
        threads: int | None = None,
        **options: Any,
    ) -> None:
        """``options`` are the other fields of ``RecognizerOptions`` by keyword (``labels``, ``min_face``,
        ``detect_size`` ...), which holds their defaults and checks them."""
        self._start(RecognizerOptions(model, detector, threads, **options))

    @classmethod
    def create_from_options(cls, options: RecognizerOptions) -> EmotionRecognizer:
        """The recognizer ``options`` describe: the way every caller that keeps its settings builds one."""
        recognizer = cls.__new__(cls)
        recognizer._start(options)
        return recognizer

    def _start(self, options: RecognizerOptions) -> None:
        model, detector = options.model, options.detector
        if isinstance(model, EmotionModel):
            self.model = model
        else:
            self.model = load_model(
                model, labels=options.labels, threads=options.threads, normalization=options.normalization
            )
        # a given model keeps the threads it was loaded with (``threads`` is for loading one)
        loaded_with = self.model.threads if isinstance(model, EmotionModel) else options.threads
        self.threads = loaded_with if loaded_with is not None else default_threads()
        self.detector_name = detector if isinstance(detector, str) else detector_name(detector)
        if isinstance(detector, str):
            detector = make_detector(
                detector,
                options.detector_model,
                options.min_face,
                options.max_side,
                options.detect_size,
                options.detector_score,
            )
        self.detector = detector
        self.options = options
        self.min_confidence = options.min_confidence
        self.prior_tau = self.model.checked_prior_tau(options.prior_tau)
        self.model_name = Path(self.model.name).name
        self._labels = self.model.labels
        self._closed = False

    @property
    def labels(self) -> tuple[str, ...]:
        return self._labels

    def __repr__(self) -> str:
        uncertain = f", min_confidence={self.min_confidence:g}" if self.min_confidence else ""
        prior = f", prior_tau={self.prior_tau:g}" if self.prior_tau else ""
        state = ", closed" if self._closed else ""
        return (
            f"EmotionRecognizer(model={self.model_name!r}, detector={self.detector_name!r}, "
            f"threads={self.threads}{uncertain}{prior}{state})"
        )

    def __enter__(self) -> EmotionRecognizer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Drop the model and the detector (freed now unless held elsewhere); later calls raise
        ``RecognizerClosedError``."""
        if not self._closed:
            self._closed = True
            del self.model, self.detector

    def predict(self, image: ImageInput, boxes: Sequence[Box] | None = None) -> list[Face]:
        """The faces of ``recognize(image, boxes)``: no timings, no image."""
        return self.recognize(image, boxes).faces

    def recognize(
        self, image: ImageInput, boxes: Sequence[Box] | None = None, *, prior_tau: float | None = None
    ) -> Prediction:
        """Faces found in ``image`` (path, bytes, array or ``ScaledImage``), with the decoded image and
        this call's timings; ``boxes`` (in original pixels) skips detection (video tracking).
        ``prior_tau`` (None: the recognizer's) is this call's alone, checked as ``RecognizerOptions``
        checks it: the demo's requests each choose theirs from one cached recognizer.

        A given box (x, y, w, h) may lie partly outside the image (a tracked face leaving the frame): its
        crop is clipped to the image, and its face is reported with the box as given, which the tracker
        matches.
        A box that is not four finite numbers, has no width or height, or lies wholly outside the image
        raises ``OptionError``.

        No face gives empty ``faces``; an unreadable image, or an input of another type (``None``, a
        number, a list: ``predict_batch`` takes several images), raises ``ImageError``.
        """
        self._check_open()
        tau = self.prior_tau if prior_tau is None else self.model.checked_prior_tau(prior_tau)
        clock = _Clock()
        decoded = decode_image_scaled(image)
        clock.lap("decode")
        faces = self._classify([decoded], [boxes], clock, tau)[0]
        return Prediction(faces, decoded, clock.timings(len(faces)))

    def predict_batch(self, images: Iterable[ImageInput]) -> list[list[Face]]:
        """Faces of each image; all faces of all images go through one model call.

        ``images`` is a list (or any iterable) of images; one image (a path, bytes or an array that is
        one gray or colour picture) raises ``ImageError`` rather than being taken apart row by row or
        character by character.
        """
        self._check_open()
        _check_batch(images)
        clock = _Clock()
        decoded = []
        for image in images:
            decoded.append(decode_image_scaled(image))
            clock.lap("decode")
        return self._classify(decoded, [None] * len(decoded), clock, self.prior_tau)

    def detect_emotions(self, image: ImageInput) -> list[dict[str, Any]]:
        """fer-compatible view: ``[{"box": [x, y, w, h], "emotions": {label: score}}]``."""
        return [face.to_fer() for face in self.predict(image)]

    def _check_open(self) -> None:
        if self._closed:
            raise RecognizerClosedError(f"{self!r} was closed; create a new one")

    def _classify(
        self, images: list[ScaledImage], given: list[Sequence[Box] | None], clock: _Clock, prior_tau: float
    ) -> list[list[Face]]:
        # per image: (box in original pixels, box in its pixels, the detector's finding or None)
        found: list[list[tuple[Box, Box, Detection | None]]] = []
        own_findings = callable(getattr(self.detector, "detect_faces", None))  # else only boxes, no score
        for scaled, known in zip(images, given, strict=True):
            if known is not None:
                boxes = _given_boxes(known, scaled.original_size)
                found.append([(box, scaled.to_image(box), None) for box in boxes])
            else:
                faces = reading_order(detect_faces(self.detector, scaled.image))
                found.append([(scaled.to_original(f.box), f.box, f if own_findings else None) for f in faces])
            clock.lap("detect")
        margin, offset = self.model.metadata.framing_for(self.detector_name)
        pairs = zip(images, found, strict=True)
        crops = [crop_face(scaled.image, box, margin, offset) for scaled, faces in pairs for _, box, _ in faces]
        batch = self.model.preprocess(crops)
        clock.lap("preprocess")
        probs = self.model.predict(batch, prior_tau)
        clock.lap("infer")
        rows = iter(probs)
        results = [
            [
                face_from_scores(box, self.labels, next(rows), None, self.min_confidence, detection, scaled.scale)
                for box, _, detection in faces
            ]
            for scaled, faces in zip(images, found, strict=True)
        ]
        return results


def _check_batch(images: object) -> None:
    """``ImageError`` for one image given where several are expected: iterating it would feed each
    character of a path, or each row of an array, to the decoder as an image."""
    single = isinstance(images, str | os.PathLike | bytes | bytearray | ScaledImage)
    if isinstance(images, np.ndarray):  # a batch is (N, H, W) gray or (N, H, W, C); else it is one image
        single = images.ndim < 3 or (images.ndim == 3 and images.shape[2] in (1, 3, 4))
    if single or not isinstance(images, Iterable):
        raise ImageError(
            f"predict_batch takes a list of images, got {described(images)}; pass a list such as [image], "
            "or call predict for one image"
        )


def _given_boxes(boxes: object, size: tuple[int, int]) -> list[Box]:
    """A caller's (x, y, w, h) boxes as ints, in original pixels of an image of ``size`` (width, height);
    ``OptionError`` for a malformed box or one with no pixel in the image. A box partly outside is kept
    as given (the crop is clipped): a tracker matches its faces by the boxes it predicted."""
    if isinstance(boxes, str | bytes | bytearray) or not isinstance(boxes, Iterable):
        raise OptionError(f"boxes must be a list of (x, y, w, h) boxes or None, got {described(boxes)}")
    return [_checked_box(box, size) for box in boxes]


def _checked_box(box: object, size: tuple[int, int]) -> Box:
    values: tuple[object, ...] = ()
    if isinstance(box, Iterable) and not isinstance(box, str | bytes | bytearray):
        values = tuple(box)
    if len(values) != 4 or not all(is_integer(v) or (is_real(v) and math.isfinite(v)) for v in values):
        raise OptionError(
            f"a box must be 4 finite numbers (x, y, w, h) in the image's pixels, got {described(box)}; "
            "boxes takes a list of them"
        )
    x, y, w, h = (int(v) for v in values)
    if w <= 0 or h <= 0:
        raise OptionError(f"box {(x, y, w, h)!r:.80} has no area: its width and height must be at least 1 pixel")
    if min(size[0], x + w) <= max(0, x) or min(size[1], y + h) <= max(0, y):
        raise OptionError(f"box {(x, y, w, h)!r:.80} lies outside the {size[0]}x{size[1]} image")
    return x, y, w, h
