"""Image bytes (or a webcam frame) in, a JSON-ready result out: the one code path behind the UI and REST.

TFLite interpreters and OpenCV cascades are not thread-safe, and loading one costs far more than a
request, so recognizers are cached and lent to one request at a time. Each (model, detector,
threads) has a pool of up to ``workers`` recognizers (default: one per core, each with
``cores // workers`` interpreter threads), so concurrent requests run in parallel up to the
hardware instead of queueing on one lock. The cache is bounded because every key part is checked
against a fixed set of choices and every pool has at most ``workers`` recognizers.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from feredge.demo.decoder import DECODE_TIMEOUT_S, DecoderPool
from feredge.edge.artifacts import display_names
from feredge.edge.decode import ScaledImage, decode_image_scaled
from feredge.edge.detectors import DEFAULT_DETECTOR, YuNetDetector, available_detectors
from feredge.edge.errors import FeredgeError, ImageError, ModelLoadError, OptionError
from feredge.edge.metadata import PRIOR_TAU_RANGE
from feredge.edge.model import DEFAULT_MODEL, check_prior_tau, default_threads, shipped_models
from feredge.edge.options import RecognizerOptions
from feredge.edge.recognizer import EmotionRecognizer, Face, Prediction, StageTimings

MAX_UPLOAD_BYTES = 10 * 1024 * 1024


class DemoRequestError(FeredgeError, ValueError):
    """A request names an unknown model or detector, or a thread count out of range."""


class UploadTooLargeError(ImageError):
    """An upload is larger than the demo accepts (``MAX_UPLOAD_BYTES``)."""


def model_choices(paths: list[str | Path]) -> dict[str, Path]:
    """Display name -> model file: the given files, then the models shipped with the package.

    Names follow the one rule of ``feredge.edge.artifacts.display_names`` (the stem unless stems clash).
    """
    files = [Path(p) for p in paths]
    given = {f.resolve() for f in files}
    files += [f for f in shipped_models() if f.resolve() not in given]
    return dict(zip(display_names(files), files, strict=True))


@dataclass
class Analysis:
    """One request's answer; ``decoded`` is the BGR or gray image (maybe decoded at reduced size,
    see ``decode_image_scaled``) with the original size the boxes refer to."""

    model: str
    detector: str
    threads: int
    faces: list[Face]
    timings: StageTimings
    decoded: ScaledImage

    @property
    def image(self) -> np.ndarray:
        return self.decoded.image

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record: ``Prediction.to_dict`` (``image_size`` as ``[width, height]``, timings in
        milliseconds), the record of ``feredge predict --json``, after the model, detector and threads."""
        record: dict[str, Any] = {"model": self.model, "detector": self.detector, "threads": self.threads}
        return record | Prediction(self.faces, self.decoded, self.timings).to_dict()


def default_workers() -> int:
    """One recognizer per core: a request is CPU-bound, so more would only take turns."""
    return max(1, os.cpu_count() or 1)


class RecognizerPool:
    """Up to ``size`` recognizers made by ``make``, each lent to one caller at a time.

    A recognizer is made only when every existing one is busy, so an idle pool costs one; a caller
    that finds ``size`` of them busy waits for the first one returned.
    """

    def __init__(self, make: Callable[[], EmotionRecognizer], size: int) -> None:
        self._make, self.size = make, size
        self._idle: queue.LifoQueue[EmotionRecognizer] = queue.LifoQueue()  # the warmest one first
        self._made = 0
        self._lock = threading.Lock()

    @property
    def made(self) -> int:
        return self._made

    @contextlib.contextmanager
    def borrow(self) -> Iterator[EmotionRecognizer]:
        recognizer = self._take()
        try:
            yield recognizer
        finally:
            self._idle.put(recognizer)

    def _take(self) -> EmotionRecognizer:
        with contextlib.suppress(queue.Empty):
            return self._idle.get_nowait()
        with self._lock:
            grow = self._made < self.size
            if grow:
                self._made += 1
        if not grow:
            return self._idle.get()
        try:
            return self._make()
        except BaseException:
            with self._lock:
                self._made -= 1
            raise


class DemoService:
    """Cached recognizers for a fixed set of models and detectors, shared by all requests.

    ``options`` (``RecognizerOptions``) are the settings every recognizer shares: ``labels`` for models
    without feredge metadata, a YuNet ``detector_model``, ``detect_size``, ``prior_tau``, ``min_face``,
    ``min_confidence``; a request picks only the model, the detector and the threads. Every model is
    loaded once at construction (default detector and threads), and a ``detector_model`` is loaded once
    too, so a bad model file fails at start-up rather than on the first request. ``workers`` (default:
    the number of cores) is how many requests run at once per model, and how many decoder processes
    there are at most; a decode longer than ``decode_timeout_s`` is refused.
    """

    def __init__(
        self,
        models: Mapping[str, str | Path],
        options: RecognizerOptions | None = None,
        max_upload_bytes: int = MAX_UPLOAD_BYTES,
        workers: int | None = None,
        decode_timeout_s: float = DECODE_TIMEOUT_S,
    ) -> None:
        if not models:
            raise ModelLoadError(f"no default model is installed (expected {DEFAULT_MODEL}); pass --model PATH")
        if workers is not None and workers < 1:
            raise OptionError(f"workers must be >= 1, got {workers}")
        self.options = RecognizerOptions() if options is None else options
        if self.options.detector_model is not None:
            YuNetDetector(self.options.detector_model)  # raises ModelLoadError for a missing or unusable file
        self.models = {name: Path(path) for name, path in models.items()}
        self.detectors = available_detectors(self.options.detector_model)
        self.max_upload_bytes = max_upload_bytes
        self.workers = workers or default_workers()
        self.default_model = next(iter(self.models))
        self.default_detector = DEFAULT_DETECTOR
        # workers x threads ~ cores: parallel requests, not parallel layers, use a small CNN's cores best
        cores = os.cpu_count() or 1
        self.default_threads = max(1, min(default_threads(), cores // self.workers))
        self.max_threads = cores  # default_threads() never exceeds the cores
        self._pools: dict[tuple[str, str, int], RecognizerPool] = {}
        self._pools_lock = threading.Lock()
        self.decoders = DecoderPool(self.workers, decode_timeout_s)
        self.decoders.warm()
        for name in self.models:
            with self.recognizer(name):
                pass

    def analyze(
        self,
        image: bytes | np.ndarray,
        model: str | None = None,
        detector: str | None = None,
        threads: int | None = None,
        name: str = "upload",
        prior_tau: Any = None,
    ) -> Analysis:
        """Decode ``image`` (encoded bytes, or a BGR/gray array such as a webcam frame) and find its faces.

        Encoded bytes are decoded in a worker process (``feredge.demo.decoder``), so a decode that takes
        too long is stopped and refused. ``prior_tau`` (a number or its text; None: the service's) is this
        request's alone, served by the same cached recognizers. Raises ``UploadTooLargeError``,
        ``ImageError`` (named after ``name``; ``DecodeTimeoutError`` for a slow decode) or
        ``DemoRequestError``.
        """
        model, detector, threads = self._choices(model, detector, threads)
        tau = None if prior_tau is None else _prior_tau(prior_tau)
        if isinstance(image, bytes) and len(image) > self.max_upload_bytes:
            raise UploadTooLargeError(f"{name}: larger than the {self.max_upload_bytes / 2**20:g} MB upload limit")
        start = time.perf_counter()
        decoded = self.decoders.decode(image, name) if isinstance(image, bytes) else decode_image_scaled(image, name)
        decode_ms = (time.perf_counter() - start) * 1000.0
        with self.recognizer(model, detector, threads) as recognizer:
            try:
                result = recognizer.recognize(decoded, prior_tau=tau)
            except OptionError as exc:  # a prior_tau this model cannot take: it has no training prior
                raise DemoRequestError(str(exc)) from exc
        timings = replace(result.timings, decode_ms=decode_ms)  # the decode ran in a decoder process
        return Analysis(model, detector, threads, result.faces, timings, decoded)

    def compare(
        self, image: bytes | np.ndarray, detector: str | None = None, threads: int | None = None, name: str = "upload"
    ) -> list[Analysis]:
        """Every model's answer for one image, the default model first: the image is decoded and its
        faces detected once, so the rows differ only in the model. Raises what ``analyze`` raises."""
        first = self.analyze(image, self.default_model, detector, threads, name)
        boxes = [face.box for face in first.faces]
        analyses = [first]
        for model in list(self.models)[1:]:
            with self.recognizer(model, first.detector, first.threads) as recognizer:
                result = recognizer.recognize(first.decoded, boxes=boxes)
            # the image was decoded and its faces found once, for the first model: those times are shared
            timings = replace(result.timings, decode_ms=first.timings.decode_ms, detect_ms=first.timings.detect_ms)
            analyses.append(Analysis(model, first.detector, first.threads, result.faces, timings, first.decoded))
        return analyses

    @contextlib.contextmanager
    def recognizer(
        self, model: str | None = None, detector: str | None = None, threads: int | None = None
    ) -> Iterator[EmotionRecognizer]:
        """``with service.recognizer(model, detector) as recognizer:`` a cached recognizer that is this
        caller's alone until the block ends (``None`` picks the default). Hold it only as long as it
        is used: a pool lends ``workers`` of them, and further callers wait for one to come back.
        Raises ``DemoRequestError`` for an unknown model, detector or thread count."""
        key = self._choices(model, detector, threads)
        with self._pools_lock:
            pool = self._pools.get(key)
            if pool is None:
                pool = self._pools[key] = RecognizerPool(lambda: self._make(*key), self.workers)
        with pool.borrow() as recognizer:
            yield recognizer

    def pool_sizes(self) -> dict[tuple[str, str, int], int]:
        """Recognizers made so far per (model, detector, threads): what the cache holds."""
        with self._pools_lock:
            return {key: pool.made for key, pool in self._pools.items()}

    def _choices(self, model: str | None, detector: str | None, threads: Any) -> tuple[str, str, int]:
        model = model or self.default_model
        detector = detector or self.default_detector
        threads = self.default_threads if threads is None else _whole_number(threads)
        if model not in self.models:
            raise DemoRequestError(f"unknown model {model!r}; choose from {', '.join(self.models)}")
        if detector not in self.detectors:
            raise DemoRequestError(f"unknown detector {detector!r}; choose from {', '.join(self.detectors)}")
        if not 1 <= threads <= self.max_threads:
            raise DemoRequestError(f"threads must be between 1 and {self.max_threads}, got {threads}")
        return model, detector, threads

    def _make(self, model: str, detector: str, threads: int) -> EmotionRecognizer:
        # the demo's --detector-model is a YuNet file (checked at start-up); other detectors keep their own
        detector_model = self.options.detector_model if detector == YuNetDetector.registry_name else None
        options = replace(
            self.options, model=self.models[model], detector=detector, threads=threads, detector_model=detector_model
        )
        return EmotionRecognizer.create_from_options(options)


def _prior_tau(value: Any) -> float:
    """An API caller's prior_tau ("1", 0.5) as a float in ``PRIOR_TAU_RANGE``; anything else is a request error."""
    try:
        number = float(value)
        check_prior_tau(number)
    except (TypeError, ValueError):  # OptionError is a ValueError
        low, high = PRIOR_TAU_RANGE
        raise DemoRequestError(f"prior_tau must be a number from {low:g} to {high:g}, got {value!r:.80}") from None
    return number


def _whole_number(value: Any) -> int:
    """An API caller's thread count ("2", 2.0 from a slider) as an int; anything else is a request error."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if not number.is_integer():
        raise DemoRequestError(f"threads must be a whole number, got {value!r}")
    return int(number)
