"""feredge: facial emotion recognition that runs on the edge.

    from feredge import EmotionRecognizer, ImageError, analyze_video

    with EmotionRecognizer() as recognizer:          # the shipped int8 model, YuNet detector
        faces = recognizer.predict("photo.jpg")
    timeline = analyze_video("clip.mp4")              # one row per frame and tracked face

Every error feredge raises for a problem the caller can fix is a ``FeredgeError`` (``ImageError``,
``ModelLoadError``, ``OptionError``, ...), and ``Detector`` is the protocol a detector of your own
meets (``detect(image) -> boxes``) to be passed as ``EmotionRecognizer(detector=...)``.

The public names are imported on first use, so ``import feredge`` costs nothing beyond this file
(no numpy, OpenCV or interpreter until a name is used) and never loads TensorFlow.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# In a source checkout the subpackages are the sibling folders edge/, train/, ... that pyproject's
# package-dir maps to feredge.edge, feredge.train, ...; when Python runs in the checkout's root, this
# folder shadows the installed package, so point the namespace at those folders too.
_checkout = Path(__file__).resolve().parent.parent
if (_checkout / "pyproject.toml").is_file() and (_checkout / "edge" / "__init__.py").is_file():
    __path__.append(str(_checkout))

# public name -> the module that defines it
_PUBLIC = {
    "EmotionRecognizer": "feredge.edge.recognizer",
    "Face": "feredge.edge.recognizer",
    "Prediction": "feredge.edge.recognizer",
    "StageTimings": "feredge.edge.recognizer",
    "RecognizerOptions": "feredge.edge.options",
    "VideoOptions": "feredge.edge.options",
    "RecognizerClosedError": "feredge.edge.recognizer",
    "Detector": "feredge.edge.detectors",
    "load_model": "feredge.edge.model",
    "analyze_video": "feredge.edge.timeline",
    "FeredgeError": "feredge.edge.errors",
    "DataError": "feredge.edge.errors",
    "ImageError": "feredge.edge.errors",
    "LabelError": "feredge.edge.errors",
    "MetadataError": "feredge.edge.errors",
    "ModelLoadError": "feredge.edge.errors",
    "OptionError": "feredge.edge.errors",
    "OutputError": "feredge.edge.errors",
    "PartialFailure": "feredge.edge.errors",
    "VideoError": "feredge.edge.errors",
}
__all__ = [
    "DataError",
    "Detector",
    "EmotionRecognizer",
    "Face",
    "FeredgeError",
    "ImageError",
    "LabelError",
    "MetadataError",
    "ModelLoadError",
    "OptionError",
    "OutputError",
    "PartialFailure",
    "Prediction",
    "RecognizerClosedError",
    "RecognizerOptions",
    "StageTimings",
    "VideoError",
    "VideoOptions",
    "__version__",
    "analyze_video",
    "load_model",
]  # the keys of _PUBLIC, and the version

if TYPE_CHECKING:
    from feredge.edge.detectors import Detector
    from feredge.edge.errors import (
        DataError,
        FeredgeError,
        ImageError,
        LabelError,
        MetadataError,
        ModelLoadError,
        OptionError,
        OutputError,
        PartialFailure,
        VideoError,
    )
    from feredge.edge.model import load_model
    from feredge.edge.options import RecognizerOptions, VideoOptions
    from feredge.edge.recognizer import EmotionRecognizer, Face, Prediction, RecognizerClosedError, StageTimings
    from feredge.edge.timeline import analyze_video


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'feredge' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_PUBLIC})
