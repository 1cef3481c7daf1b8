"""The face detectors, one registry: a decoded image in, faces (box, score, landmarks) in its own pixels out.

Each detector is registered once with ``@register_detector`` (the way ``train/backbones.py``
registers backbones, after timm's ``register_model``): its name, its builder, what it needs and a
description. CLI choices, the demo's offer and the benchmark's pipeline all read ``DETECTORS``, and
``make_detector`` builds any row, so a new detector is one decorated function in this module.

- ``haar``: OpenCV's bundled frontal-face cascade; works on any CPU (needs OpenCV < 5).
- ``yunet``: YuNet 2023mar through ``cv2.FaceDetectorYN``; finds turned and partly covered faces and
  gives five landmarks. Its ONNX file ships in ``models/detectors/`` (MIT, ``LICENSE.yunet``);
  ``--detector-model PATH`` runs another YuNet file.
- ``blazeface``: MediaPipe's BlazeFace short range on the LiteRT interpreter (``edge/blazeface.py``);
  six landmarks, about a millisecond per frame, for faces that fill a good part of the frame. Its
  ``.tflite`` ships beside YuNet's (Apache-2.0, ``LICENSE.mediapipe``); ``--detector-model PATH`` runs
  another short-range file (one 1x128x128x3 float input, checked).

YuNet and BlazeFace keep the faces scoring at least their score threshold (``DetectorEntry.score``; set
with ``make_detector(score_threshold=...)``, ``RecognizerOptions.detector_score`` or ``--detector-score``).
- ``none``: the input already is a face crop; the whole image is the one box.

Every detector offers ``detect(image) -> boxes``; the learned ones also ``detect_faces(image) ->
[Detection]`` with scores and landmarks (``detect_faces(detector, image)`` serves any detector).
Detection runs on a copy whose long side is at most ``detect_size`` (the resolution faces need: a
detector's cost grows with its input pixels; ``None``: the image's own) and never above ``max_side``
(so a 10000 x 10000 photo costs one small resized copy, not a gray or float copy at full size); the
results are mapped back to the image's pixels. Each detector's default ``detect_size`` was chosen by
the rule in ``docs/deploy.md`` (``DetectorEntry.detect_size``). An image too thin to hold a face
at that scale (``MIN_DETECTION_SIDE``: a 20000 x 1 strip) has no faces. Boxes are in the pixels of the
image given, which ``edge/decode.py`` has already turned upright by its EXIF orientation.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from feredge.edge.decode import check_model_file
from feredge.edge.errors import ModelLoadError, OptionError
from feredge.edge.preprocess import to_gray
from feredge.edge.quiet import library_messages

Box = tuple[int, int, int, int]
ModelPath = str | Path | None

DEFAULT_DETECTOR = "yunet"
# None: each detector's own smallest face. Haar's is its search window (smaller windows mostly find
# texture); the learned detectors' is 0, since their score threshold decides and a fixed 32 px would
# silently drop the small faces of a group photo that they do find.
DEFAULT_MIN_FACE: int | None = None
HAAR_MIN_FACE = 32
DEFAULT_MAX_SIDE = 640
# Each detector's default detect size, chosen by the rule in docs/deploy.md (the smallest size whose recall
# stays within 1 point of full resolution's, with no more false boxes, on the group-photo proxy and JAFFE;
# benchmarks/results/detect_size_2026-12-06/). YuNet: 480 keeps 99.7% of the proxy's faces (320: 75.6%) and
# takes 14 ms per 640x480 frame instead of 19; Haar loses 2 points at 480; BlazeFace's network sees 128 px
# whatever it is given, so its size changes the resize only.
YUNET_DETECT_SIZE = 480
HAAR_DETECT_SIZE = 640
BLAZEFACE_DETECT_SIZE = 160
# ``make_detector(detect_size=DETECTOR_DEFAULT)``: the detector's own measured default (None is full resolution).
DETECTOR_DEFAULT = "default"
DetectSize = int | None | str  # pixels, None (full resolution) or DETECTOR_DEFAULT
YUNET_SCORE = 0.7
# On inputs 32 px high (or wide) or less YuNet returns random boxes with score 1; 33 px is fine.
YUNET_MIN_INPUT = 64
# An image whose short side is below this at the detection scale (a 1300x1 strip, or a 20000x20 one
# scaled to 640x0.64) holds no face any detector here finds: the keenest, YuNet, finds a 14 px face
# and misses an 11 px one. Such an image is no face, not a resize to 0 pixels.
MIN_DETECTION_SIDE = 8
# The smallest detect size taken: below it a 4:3 frame's short side nears MIN_DETECTION_SIDE's territory
# and any face in it is a few pixels.
MIN_DETECT_SIZE = 32
# YuNet 2023mar's outputs (what cv2.FaceDetectorYN reads): name -> values per anchor, at strides 8, 16, 32.
YUNET_OUTPUTS = {
    f"{kind}_{stride}": size
    for kind, size in (("cls", 1), ("obj", 1), ("bbox", 4), ("kps", 10))
    for stride in (8, 16, 32)
}
BLAZEFACE_SCORE = 0.5
# Haar's search: each scale 1.1 times the last, and a face where 5 neighbouring windows agree (OpenCV's own
# advice); fixed, as Haar is the fallback detector rather than one to tune.
HAAR_SCALE_FACTOR = 1.1
HAAR_MIN_NEIGHBORS = 5

DETECTOR_MODELS = Path(__file__).resolve().parent / "models" / "detectors"
YUNET_MODEL = DETECTOR_MODELS / "face_detection_yunet_2023mar.onnx"
BLAZEFACE_MODEL = DETECTOR_MODELS / "face_detection_short_range.tflite"


@dataclass(frozen=True, eq=False)
class Detection:
    """One face: its (x, y, w, h) box, the detector's score and its landmarks ((K, 2) pixels) if any.

    YuNet's five landmarks are the eyes, the nose tip and the mouth corners; BlazeFace's six are the
    eyes, the nose tip, the mouth centre and the ear tragions. "Right" is the subject's right, which
    is the left of the image, and comes first.
    """

    box: Box
    score: float = 1.0
    landmarks: np.ndarray | None = None


class Detector(Protocol):
    """Anything with ``detect(image) -> boxes``; boxes are ints in the image's pixels."""

    def detect(self, image: np.ndarray) -> list[Box]: ...


def iou(a: Box | np.ndarray, b: Box | np.ndarray) -> np.ndarray:
    """Intersection over union of (x, y, w, h) boxes, broadcast as numpy does: ``b`` may be one box or an
    (N, 4) array of them (BlazeFace's NMS scores every anchor against the best at once). Boxes with no
    area have IoU 0 with anything. One box against one box gives a 0-d array: ``float()`` it."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    ix = np.minimum(a[..., 0] + a[..., 2], b[..., 0] + b[..., 2]) - np.maximum(a[..., 0], b[..., 0])
    iy = np.minimum(a[..., 1] + a[..., 3], b[..., 1] + b[..., 3]) - np.maximum(a[..., 1], b[..., 1])
    inter = np.clip(ix, 0, None) * np.clip(iy, 0, None)
    union = a[..., 2] * a[..., 3] + b[..., 2] * b[..., 3] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def detect_faces(detector: Detector, image: np.ndarray) -> list[Detection]:
    """``detector``'s faces in ``image`` with scores and landmarks where it gives them, largest first."""
    finder = getattr(detector, "detect_faces", None)
    if finder is not None:
        return finder(image)
    return [Detection((int(x), int(y), int(w), int(h))) for x, y, w, h in detector.detect(image)]


# (model_path, min_face, max_side, detect_size, score_threshold) -> detector
DetectorBuilder = Callable[[ModelPath, int, int, int | None, float | None], Detector]


@dataclass(frozen=True)
class DetectorEntry:
    """One registered detector.

    ``model_file``: it runs a model file that ``--detector-model`` may replace; ``landmarks``: it
    finds facial landmarks besides boxes; ``whole_image``: it finds no faces but passes the image on
    as one (no use for a pipeline benchmark); ``ready(model_path)``: it can be built here, which
    decides whether the demo offers it; ``min_face``: its smallest face side when none is asked for;
    ``detect_size``: the long side it detects at when none is asked for (None: full resolution), chosen
    by the rule in ``docs/deploy.md``; ``score``: its score threshold when none is asked for (None: it
    has none to set).
    """

    name: str
    build: DetectorBuilder
    description: str
    model_file: bool = False
    landmarks: bool = False
    whole_image: bool = False
    ready: Callable[[ModelPath], bool] = lambda model_path: True
    min_face: int = 0
    detect_size: int | None = None
    score: float | None = None


DETECTORS: dict[str, DetectorEntry] = {}


def register_detector(
    name: str,
    description: str,
    *,
    model_file: bool = False,
    landmarks: bool = False,
    whole_image: bool = False,
    ready: Callable[[ModelPath], bool] | None = None,
    min_face: int = 0,
    detect_size: int | None = None,
    score: float | None = None,
) -> Callable[[DetectorBuilder], DetectorBuilder]:
    """Decorator: add ``build(model_path, min_face, max_side, detect_size, score_threshold) -> Detector``
    to ``DETECTORS`` as ``name``."""

    def wrap(build: DetectorBuilder) -> DetectorBuilder:
        if name in DETECTORS:
            raise ValueError(f"detector {name!r} is registered twice")
        extra = {} if ready is None else {"ready": ready}
        DETECTORS[name] = DetectorEntry(
            name,
            build,
            description,
            model_file,
            landmarks,
            whole_image,
            **extra,
            min_face=min_face,
            detect_size=detect_size,
            score=score,
        )
        return build

    return wrap


def detector_names(*, finds_faces: bool = False, model_file: bool = False) -> tuple[str, ...]:
    """Registered names in registration order; ``finds_faces`` leaves out the whole-image one,
    ``model_file`` keeps only those whose model file ``--detector-model`` replaces."""
    return tuple(
        name
        for name, entry in DETECTORS.items()
        if not (finds_faces and entry.whole_image) and not (model_file and not entry.model_file)
    )


def available_detectors(model_path: ModelPath = None) -> tuple[str, ...]:
    """The detectors whose model files are at hand here."""
    return tuple(name for name, entry in DETECTORS.items() if entry.ready(model_path))


def describe_detectors(*, finds_faces: bool = False) -> str:
    """``name: description; ...`` for help texts, of the detectors ``detector_names`` gives: a help
    text describes exactly the choices its option takes."""
    return "; ".join(f"{name}: {DETECTORS[name].description}" for name in detector_names(finds_faces=finds_faces))


def make_detector(
    name: str = DEFAULT_DETECTOR,
    model_path: ModelPath = None,
    min_face: int | None = DEFAULT_MIN_FACE,
    max_side: int = DEFAULT_MAX_SIDE,
    detect_size: DetectSize = DETECTOR_DEFAULT,
    score_threshold: float | None = None,
) -> Detector:
    """A detector by name, one of ``DETECTORS``; an unknown name, a bad size or a ``model_path`` or
    ``score_threshold`` for a detector without a replaceable model file or a score (it would be
    ignored) is an ``OptionError``. ``score_threshold`` None is the detector's own
    (``DetectorEntry.score``).

    ``min_face`` None is the detector's own default (``DetectorEntry.min_face``); ``detect_size`` is the
    long side of the copy detection runs on (never above ``max_side``, never upscaled), None the image's
    own resolution and ``DETECTOR_DEFAULT`` the detector's measured default (``DetectorEntry.detect_size``)."""
    entry = DETECTORS.get(name)
    if entry is None:
        raise OptionError(f"unknown detector {name!r}; choose from {', '.join(DETECTORS)}")
    if model_path is not None and not entry.model_file:
        raise OptionError(
            f"detector {name!r} takes no detector model file ({model_path}); "
            f"one can be given only for: {', '.join(detector_names(model_file=True))}"
        )
    if score_threshold is not None and entry.score is None:
        scored = ", ".join(name for name, other in DETECTORS.items() if other.score is not None)
        raise OptionError(f"detector {name!r} has no score threshold to set; one can be given only for: {scored}")
    size = entry.detect_size if detect_size == DETECTOR_DEFAULT else check_detect_size(detect_size)
    score = entry.score if score_threshold is None else check_score_threshold(score_threshold)
    return entry.build(model_path, entry.min_face if min_face is None else min_face, max_side, size, score)


def check_score_threshold(score_threshold: object) -> float:
    """``score_threshold`` as a float in (0, 1), else ``OptionError``: 0 would keep every anchor, 1 none."""
    if isinstance(score_threshold, bool) or not isinstance(score_threshold, int | float | np.number):
        score_threshold = float("nan")
    if not 0.0 < float(score_threshold) < 1.0:  # NaN fails the comparison
        raise OptionError(f"detector_score must be a number between 0 and 1 (exclusive), got {score_threshold!r:.80}")
    return float(score_threshold)


def default_detect_size(name: str) -> int | None:
    """The detect size ``name`` runs at unless told otherwise (None: full resolution, up to ``max_side``)."""
    entry = DETECTORS.get(name)
    if entry is None:
        raise OptionError(f"unknown detector {name!r}; choose from {', '.join(DETECTORS)}")
    return entry.detect_size


def check_detect_size(detect_size: object) -> int | None:
    """``detect_size`` as an int of at least ``MIN_DETECT_SIZE`` pixels, or None; else ``OptionError``."""
    if detect_size is None:
        return None
    if isinstance(detect_size, bool) or not isinstance(detect_size, int | np.integer) or detect_size < MIN_DETECT_SIZE:
        raise OptionError(
            f"detect_size must be an int of at least {MIN_DETECT_SIZE} pixels (the long side detection runs at) "
            f"or None (full resolution), got {detect_size!r:.80}"
        )
    return int(detect_size)


def detector_name(detector: Detector) -> str:
    """A detector's registry name (its class's ``registry_name``), else its class name (a caller's own
    detector): a recognizer given the object still finds the model's framing for it."""
    return getattr(detector, "registry_name", type(detector).__name__)


@dataclass
class Found:
    """What a detector's network returns on its (downscaled) input: (n, 4) x, y, w, h floats, (n,)
    scores and (n, K, 2) landmarks or None, all in that input's pixels."""

    boxes: np.ndarray
    scores: np.ndarray
    landmarks: np.ndarray | None = None


class _ScaledDetector(ABC):
    """Runs ``_detect`` on a copy whose long side is at most ``detect_size`` and ``max_side`` and maps the
    faces back, largest first."""

    def __init__(self, min_face: int, max_side: int, detect_size: int | None = None) -> None:
        if min_face < 0:
            raise OptionError(f"min_face must be >= 0 pixels, got {min_face}")
        if max_side < 1:
            raise OptionError(f"max_side must be >= 1 pixel, got {max_side}")
        self.min_face = min_face
        self.max_side = max_side
        self.detect_size = check_detect_size(detect_size)

    def detect(self, image: np.ndarray) -> list[Box]:
        return [face.box for face in self.detect_faces(image)]

    def detect_faces(self, image: np.ndarray) -> list[Detection]:
        height, width = image.shape[:2]
        side = self.max_side if self.detect_size is None else min(self.max_side, self.detect_size)
        scale = min(1.0, side / max(height, width, 1))
        if min(height, width) * scale < MIN_DETECTION_SIDE:
            return []
        small = image
        if scale < 1.0:
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        found = self._detect(small, max(1, int(self.min_face * scale)))
        faces = []
        for i, (x, y, w, h) in enumerate(np.asarray(found.boxes, np.float64).reshape(-1, 4)):
            x0, y0 = max(0, round(x / scale)), max(0, round(y / scale))
            x1, y1 = min(width, round((x + w) / scale)), min(height, round((y + h) / scale))
            if min(x1 - x0, y1 - y0) >= max(1, self.min_face):
                points = None if found.landmarks is None else (found.landmarks[i] / scale).astype(np.float32)
                faces.append(Detection((x0, y0, x1 - x0, y1 - y0), float(found.scores[i]), points))
        return sorted(faces, key=lambda face: face.box[2] * face.box[3], reverse=True)

    @abstractmethod
    def _detect(self, image: np.ndarray, min_size: int) -> Found:
        """The faces in ``image``'s pixels; ``min_size`` is the smallest side worth searching for."""


class HaarDetector(_ScaledDetector):
    """OpenCV's ``haarcascade_frontalface_default.xml``: fast, frontal faces only."""

    registry_name = "haar"

    def __init__(
        self,
        min_face: int = HAAR_MIN_FACE,
        max_side: int = DEFAULT_MAX_SIDE,
        detect_size: int | None = None,
    ) -> None:
        super().__init__(min_face, max_side, detect_size)
        if not hasattr(cv2, "CascadeClassifier") or not hasattr(cv2, "data"):
            raise ModelLoadError(
                f"OpenCV {cv2.__version__} ships no Haar cascades: "
                "pip install 'opencv-python-headless<5', or use --detector yunet"
            )
        path = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"  # type: ignore[attr-defined]  # not in the stubs
        self._cascade = cv2.CascadeClassifier(str(path))
        if self._cascade.empty():
            raise ModelLoadError(f"{path}: cannot load OpenCV's Haar face cascade")

    def _detect(self, image: np.ndarray, min_size: int) -> Found:
        faces = self._cascade.detectMultiScale(
            cv2.equalizeHist(to_gray(image)),
            scaleFactor=HAAR_SCALE_FACTOR,
            minNeighbors=HAAR_MIN_NEIGHBORS,
            minSize=(min_size, min_size),
        )
        boxes = np.asarray(faces, np.float64).reshape(-1, 4)
        return Found(boxes, np.ones(len(boxes)))


class YuNetDetector(_ScaledDetector):
    """``cv2.FaceDetectorYN`` with a YuNet ONNX model (the shipped 2023mar file by default).

    The network keeps the input size as state, so calls are serialized (the demo serves threads).
    """

    registry_name = "yunet"

    def __init__(
        self,
        model_path: ModelPath = None,
        min_face: int = 0,
        max_side: int = DEFAULT_MAX_SIDE,
        score_threshold: float = YUNET_SCORE,
        detect_size: int | None = None,
    ) -> None:
        super().__init__(min_face, max_side, detect_size)
        path = _model_file(model_path, YUNET_MODEL)
        with library_messages():  # OpenCV's ONNX importer logs its complaints in three lines of its own
            try:
                self._net = cv2.FaceDetectorYN.create(str(path), "", (320, 320), score_threshold, 0.3, 5000)
            except cv2.error as exc:
                reason = str(exc.err).replace(str(path), "").rstrip(": ")  # "Failed to parse ONNX model: PATH"
                raise ModelLoadError(f"{path}: not a usable YuNet face detector model ({reason})") from exc
            _check_yunet_outputs(path)
        self._lock = threading.Lock()

    def _detect(self, image: np.ndarray, min_size: int) -> Found:
        bgr = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR) if image.ndim == 2 else image
        short = YUNET_MIN_INPUT - np.array(bgr.shape[:2])
        if short.max() > 0:  # padded below and right, so the boxes keep their coordinates
            bgr = cv2.copyMakeBorder(bgr, 0, max(0, short[0]), 0, max(0, short[1]), cv2.BORDER_CONSTANT, value=0)
        with self._lock:
            self._net.setInputSize((bgr.shape[1], bgr.shape[0]))
            _, faces = self._net.detect(bgr)
        if faces is None:
            return Found(np.zeros((0, 4)), np.zeros(0), np.zeros((0, 5, 2)))
        return Found(faces[:, :4], faces[:, 14], faces[:, 4:14].reshape(-1, 5, 2))


def _check_yunet_outputs(path: Path) -> None:
    """Refuse an ONNX file that is not YuNet 2023mar at load, naming it: ``cv2.FaceDetectorYN`` takes
    any ONNX model, and another one (or an older YuNet) fails only on the first image, with a cv2.error.

    The network is run once on a blank 64x64 input, and its outputs must be ``YUNET_OUTPUTS`` with one
    row per anchor (64 at stride 8, 16 at 16, 4 at 32)."""
    expected = {name: (1, (64 // int(name.rsplit("_", 1)[1])) ** 2, size) for name, size in YUNET_OUTPUTS.items()}
    try:
        net = cv2.dnn.readNet(str(path))
        net.setInput(np.zeros((1, 3, 64, 64), np.float32))
        names = list(net.getUnconnectedOutLayersNames())
        shapes = {name: tuple(out.shape) for name, out in zip(names, net.forward(names), strict=True)}
    except cv2.error as exc:
        raise ModelLoadError(f"{path}: not a YuNet face detector model (it does not run on a 64x64 image)") from exc
    if set(shapes) != set(expected):
        raise ModelLoadError(
            f"{path}: not a YuNet 2023mar face detector model (expected its 12 outputs cls, obj, bbox and "
            f"kps at strides 8, 16 and 32; it has {_names(sorted(shapes))})"
        )
    if shapes != expected:
        raise ModelLoadError(
            f"{path}: not a YuNet 2023mar face detector model (its outputs have YuNet's names but not its shapes)"
        )


def _names(names: list[str], shown: int = 6) -> str:
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return (", ".join(names[:shown]) or "none") + more


class BlazeFaceDetector(_ScaledDetector):
    """MediaPipe's BlazeFace short range on the LiteRT interpreter (``feredge.edge.blazeface``)."""

    registry_name = "blazeface"

    def __init__(
        self,
        model_path: ModelPath = None,
        min_face: int = 0,
        max_side: int = DEFAULT_MAX_SIDE,
        score_threshold: float = BLAZEFACE_SCORE,
        detect_size: int | None = None,
    ) -> None:
        from feredge.edge.blazeface import BlazeFaceModel

        super().__init__(min_face, max_side, detect_size)
        self._model = BlazeFaceModel(_model_file(model_path, BLAZEFACE_MODEL), score_threshold)

    def _detect(self, image: np.ndarray, min_size: int) -> Found:
        return self._model(image)


class WholeImage:
    """Detector ``none``: the input already is a face crop."""

    registry_name = "none"

    def detect(self, image: np.ndarray) -> list[Box]:
        return [(0, 0, image.shape[1], image.shape[0])]


def _model_file(explicit: ModelPath, shipped: Path) -> Path:
    path = shipped if explicit is None else Path(explicit)
    where = "" if explicit is not None else " (the package was installed without its detector models)"
    check_model_file(path, "detector model", where)
    return path


def _file_ready(shipped: Path) -> Callable[[ModelPath], bool]:
    return lambda model_path: model_path is not None or shipped.is_file()


@register_detector(
    HaarDetector.registry_name,
    "OpenCV's frontal-face Haar cascade",
    min_face=HAAR_MIN_FACE,
    detect_size=HAAR_DETECT_SIZE,
)
def _haar(
    model_path: ModelPath, min_face: int, max_side: int, detect_size: int | None, score: float | None
) -> Detector:
    return HaarDetector(min_face, max_side, detect_size=detect_size)


@register_detector(
    YuNetDetector.registry_name,
    "YuNet (cv2.FaceDetectorYN), finds turned and partly covered faces, 5 landmarks",
    model_file=True,
    landmarks=True,
    ready=_file_ready(YUNET_MODEL),
    detect_size=YUNET_DETECT_SIZE,
    score=YUNET_SCORE,
)
def _yunet(
    model_path: ModelPath, min_face: int, max_side: int, detect_size: int | None, score: float | None
) -> Detector:
    return YuNetDetector(model_path, min_face, max_side, score or YUNET_SCORE, detect_size)


@register_detector(
    BlazeFaceDetector.registry_name,
    "MediaPipe BlazeFace short range on LiteRT, about 1 ms, faces near the camera, 6 landmarks",
    model_file=True,
    landmarks=True,
    ready=_file_ready(BLAZEFACE_MODEL),
    detect_size=BLAZEFACE_DETECT_SIZE,
    score=BLAZEFACE_SCORE,
)
def _blazeface(
    model_path: ModelPath, min_face: int, max_side: int, detect_size: int | None, score: float | None
) -> Detector:
    return BlazeFaceDetector(model_path, min_face, max_side, score or BLAZEFACE_SCORE, detect_size)


@register_detector(WholeImage.registry_name, "no detection, each input already is a face crop", whole_image=True)
def _whole_image(
    model_path: ModelPath, min_face: int, max_side: int, detect_size: int | None, score: float | None
) -> Detector:
    return WholeImage()
